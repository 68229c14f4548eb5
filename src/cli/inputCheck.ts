// Checks `--input` values before an engine is started (starting one takes seconds), and refuses
// an input too large to allocate with its size instead of an allocator failure from inside the
// engine. Reads the whole `--input` grammar: `[NAME=]DIMS[:DTYPE]`, DIMS comma- or x-separated.
import * as os from 'node:os';

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

/** Elements and bytes of one --input value, or a message saying what is wrong with it. */
export function inputSize(text: string): InputSize | string {
  const noName = text.includes('=') ? text.slice(text.indexOf('=') + 1) : text;
  const [dimsText, dtypeText] = noName.split(':');
  const parts = dimsText
    .trim()
    .replace(/^\[|\]$/g, '')
    .split(/\s*[,x×]\s*/i);
  const dims = parts.map((p) => Number(p));
  if (!dimsText.trim() || dims.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
    return `--input ${text}: a shape is positive integers separated by commas, e.g. 1,3,224,224`;
  }
  const dtype = (dtypeText ?? DEFAULT_DTYPE)
    .trim()
    .toLowerCase()
    .replace(/^torch\./, '');
  const width = DTYPE_BYTES[dtype] ?? DTYPE_BYTES[DEFAULT_DTYPE];
  const elements = dims.reduce((a, b) => a * b, 1);
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
