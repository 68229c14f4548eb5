// The `--input` grammar, `[NAME=]SHAPE[:DTYPE]` with SHAPE comma- or x-separated, and the checks
// made before an engine is started (starting one takes seconds): a value that does not parse, or
// an input too large to allocate, is refused with its size instead of an allocator failure from
// inside the engine.
import * as os from 'node:os';
import type { InputRequest } from '../protocol/types';
import { UsageError } from './cliArgs';

/** Bytes per element of the dtypes an --input may name; unknown names are left to the engine. */
const DTYPE_BYTES: Record<string, number> = {
  float64: 8,
  double: 8,
  float32: 4,
  float: 4,
  float16: 2,
  half: 2,
  bfloat16: 2,
  int64: 8,
  long: 8,
  int32: 4,
  int: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
  complex64: 8,
};
const DEFAULT_DTYPE = 'float32';

export interface InputSize {
  text: string;
  elements: number;
  bytes: number;
  dtype: string;
}

export function parseShape(text: string): number[] {
  const parts = text
    .trim()
    .replace(/^\[|\]$/g, '')
    .split(/\s*[,x×]\s*/i);
  const dims = parts.map((p) => Number(p));
  if (parts.length === 0 || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new UsageError(
      `--input ${text}: a shape is positive integers separated by commas, e.g. 1,3,224,224`,
    );
  }
  return dims;
}

const INPUT_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INPUT_DTYPE = /^[a-z]+[0-9]*$/;

/** `[NAME=]SHAPE[:DTYPE]`, e.g. `input_ids=1,128:int64`. */
export function parseInput(text: string): InputRequest {
  let rest = text.trim();
  let name: string | undefined;
  const eq = rest.indexOf('=');
  if (eq >= 0) {
    name = rest.slice(0, eq).trim();
    rest = rest.slice(eq + 1);
    if (!INPUT_NAME.test(name)) {
      throw new UsageError(
        `--input ${text}: ${JSON.stringify(name)} is not a forward() argument name`,
      );
    }
  }
  let dtype: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    dtype = rest
      .slice(colon + 1)
      .trim()
      .toLowerCase();
    rest = rest.slice(0, colon);
    if (!INPUT_DTYPE.test(dtype)) {
      throw new UsageError(
        `--input ${text}: ${JSON.stringify(dtype)} is not a dtype (float32, int64, bool...)`,
      );
    }
  }
  const input: InputRequest = { shape: parseShape(rest) };
  if (dtype) input.dtype = dtype;
  if (name) input.name = name;
  return input;
}

/** Elements and bytes of one --input value, or a message saying what is wrong with it. */
export function inputSize(text: string): InputSize | string {
  let input: InputRequest;
  try {
    input = parseInput(text);
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  const dtype = (input.dtype ?? DEFAULT_DTYPE).replace(/^torch\./, '');
  const width = DTYPE_BYTES[dtype] ?? DTYPE_BYTES[DEFAULT_DTYPE];
  const elements = input.shape.reduce((a, b) => a * b, 1);
  return { text, elements, bytes: elements * width, dtype };
}

/** The most bytes all inputs together may take: half the engine's memory ceiling. */
export function inputBytesLimit(memoryLimitMB: number | undefined): number {
  const mb = memoryLimitMB && memoryLimitMB > 0 ? memoryLimitMB : os.totalmem() / 2 ** 20;
  return Math.floor((mb * 2 ** 20) / 2);
}

function formatBytes(n: number): string {
  return `${n.toLocaleString('en-US')} bytes (${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 3 : 1)} GiB)`;
}

/** The first problem with the --input values, or undefined when the engine may be started. */
export function inputProblem(
  texts: string[] | undefined,
  memoryLimitMB: number | undefined,
): string | undefined {
  if (!texts?.length) return undefined;
  let total = 0;
  for (const text of texts) {
    const size = inputSize(text);
    if (typeof size === 'string') return size;
    total += size.bytes;
    if (!Number.isSafeInteger(total) || total > inputBytesLimit(memoryLimitMB)) {
      return (
        `input too large: --input ${text} is ${size.elements.toLocaleString('en-US')} ${size.dtype} elements, ` +
        `${formatBytes(size.bytes)}; the limit for all inputs is ${formatBytes(inputBytesLimit(memoryLimitMB))} ` +
        '(half the engine memory limit, --memory-limit)'
      );
    }
  }
  return undefined;
}
