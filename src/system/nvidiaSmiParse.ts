// Parsers for the CSV that `nvidia-smi --format=csv,noheader,nounits` prints, and for the error
// texts it prints instead when it cannot answer. Pure functions: the sampler, the one-shot query
// and the tests all feed text in here.
import type { GpuInfo } from '../protocol/types';

/** What the sampler asks every GPU for, in this order. */
export const GPU_QUERY_FIELDS = [
  'index',
  'name',
  'uuid',
  'memory.total',
  'memory.used',
  'utilization.gpu',
  'temperature.gpu',
  'power.draw',
  'power.limit',
  'compute_cap',
  'driver_version',
  'mig.mode.current',
] as const;

export type GpuQueryField = (typeof GPU_QUERY_FIELDS)[number];

/**
 * Fields that older drivers reject as a whole query (`Field "compute_cap" is not a valid field to
 * query.`, exit 2): drop them and ask again rather than report no GPU. compute_cap appeared in the
 * 510 drivers, mig.mode.current in 450.
 */
export const OPTIONAL_GPU_QUERY_FIELDS: readonly GpuQueryField[] = [
  'compute_cap',
  'mig.mode.current',
];

/** Per-process device memory; `used_memory` is MiB with nounits. */
export const COMPUTE_APPS_QUERY_FIELDS = ['gpu_uuid', 'pid', 'used_memory'] as const;

export const CSV_FORMAT_ARG = '--format=csv,noheader,nounits';

export function gpuQueryArgs(fields: readonly GpuQueryField[]): string[] {
  return [`--query-gpu=${fields.join(',')}`, CSV_FORMAT_ARG];
}

export function computeAppsQueryArgs(): string[] {
  return [`--query-compute-apps=${COMPUTE_APPS_QUERY_FIELDS.join(',')}`, CSV_FORMAT_ARG];
}

export type NvidiaSmiFailureKind =
  /** Not on PATH / not at the configured path. */
  | 'notFound'
  /** Exists but cannot be executed (permissions, wrong format). */
  | 'notExecutable'
  /** "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." */
  | 'driver'
  /** "Failed to initialize NVML: ..." (driver/library mismatch, missing libnvidia-ml). */
  | 'nvml'
  /** "No devices were found". */
  | 'noDevices'
  /** `Field "x" is not a valid field to query.` */
  | 'invalidField'
  /** Printed something, none of it a GPU row. */
  | 'unknownFormat'
  /** Printed nothing at all. */
  | 'empty'
  /** Printed nothing for too long. */
  | 'timeout'
  /** Every GPU row was an "Unable to determine the device handle" error. */
  | 'deviceError'
  /** Exited or was killed without a recognised message. */
  | 'exited';

export interface NvidiaSmiFailure {
  ok: false;
  kind: NvidiaSmiFailureKind;
  /** One sentence for a tooltip or a log line, quoting nvidia-smi's own words where it had any. */
  reason: string;
  /** For invalidField: the field nvidia-smi rejected. */
  field?: string;
}

/** A field nvidia-smi could not give for one GPU, with its own token (`[N/A]`, `[Not Supported]`). */
export interface UnavailableField {
  index: number;
  field: string;
  value: string;
}

export interface GpuQuerySuccess {
  ok: true;
  gpus: GpuInfo[];
  /** Fields reported as `[N/A]`, `[Not Supported]`, `[Insufficient Permissions]`, `[Unknown Error]`... */
  unavailable: UnavailableField[];
  /** Lines that were neither a GPU row nor blank (a GPU nvidia-smi could not open, stray text). */
  warnings: string[];
}

export type GpuQueryOutcome = GpuQuerySuccess | NvidiaSmiFailure;

export interface GpuProcess {
  gpuUuid: string;
  pid: number;
  /** Null when nvidia-smi cannot attribute memory (`[N/A]`, e.g. some MIG and Windows WDDM setups). */
  usedMemoryMiB: number | null;
}

export interface ComputeAppsSuccess {
  ok: true;
  processes: GpuProcess[];
  warnings: string[];
}

export type ComputeAppsOutcome = ComputeAppsSuccess | NvidiaSmiFailure;

/** Longest excerpt of unexpected output quoted in a reason. */
const EXCERPT_MAX_CHARS = 160;

function excerpt(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > EXCERPT_MAX_CHARS ? `${oneLine.slice(0, EXCERPT_MAX_CHARS)}…` : oneLine;
}

const DRIVER_BANNER =
  /NVIDIA-SMI has failed because it couldn'?t communicate with the NVIDIA driver[^\n]*(?:\n[^\n]*running\.)?/;
const NVML_FAILURE =
  /Failed to initialize NVML:[^\n]*|NVIDIA-SMI couldn'?t find libnvidia-ml\.so library[^\n]*/;
const NO_DEVICES = /^No devices were found\s*$/m;
const INVALID_FIELD = /Field "([^"]+)" is not a valid field to query\./;
/** nvidia-smi names a GPU it could not open and carries on with the others. */
const DEVICE_HANDLE_ERROR =
  /^Unable to determine the device handle for (?:GPU\s*)?(\S+?):?\s+(.*)$/;

/**
 * Recognises the texts nvidia-smi prints instead of data. Returns null when the text holds none of
 * them (it may still be garbage; the row parsers decide that).
 */
export function classifyNvidiaSmiError(text: string): NvidiaSmiFailure | null {
  const driver = DRIVER_BANNER.exec(text);
  if (driver) {
    return {
      ok: false,
      kind: 'driver',
      reason: `nvidia-smi cannot reach the NVIDIA driver: "${excerpt(driver[0])}"`,
    };
  }
  const nvml = NVML_FAILURE.exec(text);
  if (nvml) {
    // The mismatch message is followed by the library version on the next line; quote both.
    const version = /NVML library version:[^\n]*/.exec(text);
    const said = version ? `${nvml[0]} (${version[0].trim()})` : nvml[0];
    return { ok: false, kind: 'nvml', reason: `nvidia-smi cannot load NVML: "${excerpt(said)}"` };
  }
  if (NO_DEVICES.test(text)) {
    return {
      ok: false,
      kind: 'noDevices',
      reason: 'nvidia-smi found no NVIDIA GPU ("No devices were found")',
    };
  }
  const field = INVALID_FIELD.exec(text);
  if (field) {
    return {
      ok: false,
      kind: 'invalidField',
      field: field[1],
      reason: `this nvidia-smi does not know the field "${field[1]}" (older driver)`,
    };
  }
  return null;
}

/** nvidia-smi's tokens for a value it does not have. Old drivers print them without brackets. */
const UNAVAILABLE_VALUE = /^\[(.+)\]$|^(N\/A|Not Supported)$/;

/** Numbers with nounits; a unit suffix is tolerated in case `nounits` was not honoured. */
const NUMBER_VALUE = /^(-?\d+(?:\.\d+)?)\s*(?:MiB|%|W|C)?$/;

type Cell = { kind: 'value'; text: string } | { kind: 'unavailable'; token: string };

function cell(raw: string): Cell {
  const text = raw.trim();
  const missing = UNAVAILABLE_VALUE.exec(text);
  if (missing) return { kind: 'unavailable', token: text };
  return { kind: 'value', text };
}

function numberOf(c: Cell | undefined): number | null | undefined {
  if (!c || c.kind === 'unavailable') return null;
  const m = NUMBER_VALUE.exec(c.text);
  return m ? Number(m[1]) : undefined; // undefined: present but not a number, so not our format
}

function textOf(c: Cell | undefined): string | null {
  if (!c || c.kind === 'unavailable') return null;
  return c.text;
}

/**
 * Splits one CSV row into the requested fields. nvidia-smi does not quote; a product name with a
 * comma would shift every later column, so surplus columns are folded back into `name`.
 */
function splitRow(line: string, fields: readonly string[]): string[] | null {
  const parts = line.split(',');
  if (parts.length === fields.length) return parts;
  const nameAt = fields.indexOf('name');
  if (parts.length < fields.length || nameAt < 0) return null;
  const extra = parts.length - fields.length;
  const name = parts.slice(nameAt, nameAt + extra + 1).join(',');
  return [...parts.slice(0, nameAt), name, ...parts.slice(nameAt + extra + 1)];
}

export interface ParsedGpuRow {
  gpu: GpuInfo;
  unavailable: UnavailableField[];
}

/** One `--query-gpu` row, or null when the line is not one (wrong column count, non-numeric index...). */
export function parseGpuRow(
  line: string,
  fields: readonly GpuQueryField[] = GPU_QUERY_FIELDS,
): ParsedGpuRow | null {
  const parts = splitRow(line, fields);
  if (!parts) return null;
  const cells = new Map<GpuQueryField, Cell>();
  fields.forEach((f, i) => cells.set(f, cell(parts[i])));

  const indexCell = cells.get('index');
  if (!indexCell || indexCell.kind !== 'value' || !/^\d+$/.test(indexCell.text)) return null;
  const index = Number(indexCell.text);
  const name = textOf(cells.get('name'));
  if (name === null || name === '') return null;

  const numeric = [
    'memory.total',
    'memory.used',
    'utilization.gpu',
    'temperature.gpu',
    'power.draw',
    'power.limit',
  ] as const;
  const nums: Partial<Record<(typeof numeric)[number], number | null>> = {};
  for (const f of numeric) {
    if (!cells.has(f)) continue;
    const v = numberOf(cells.get(f));
    if (v === undefined) return null;
    nums[f] = v;
  }

  const mig = cells.get('mig.mode.current');
  const migText = textOf(mig);
  if (migText !== null && migText !== 'Enabled' && migText !== 'Disabled') return null;

  const gpu: GpuInfo = {
    index,
    name,
    memoryTotalMiB: nums['memory.total'] ?? null,
    memoryUsedMiB: nums['memory.used'] ?? null,
    utilizationPct: nums['utilization.gpu'] ?? null,
    temperatureC: nums['temperature.gpu'] ?? null,
    powerW: nums['power.draw'] ?? null,
    powerLimitW: nums['power.limit'] ?? null,
    computeCapability: textOf(cells.get('compute_cap')),
    driverVersion: textOf(cells.get('driver_version')),
  };
  const uuid = textOf(cells.get('uuid'));
  if (uuid !== null) gpu.uuid = uuid;
  if (migText !== null) gpu.mig = migText === 'Enabled';

  const unavailable: UnavailableField[] = [];
  for (const [field, c] of cells) {
    if (c.kind === 'unavailable') unavailable.push({ index, field, value: c.token });
  }
  return { gpu, unavailable };
}

function isHeaderLine(line: string, firstField: string): boolean {
  // A query run without `noheader` starts with the field names.
  return line.split(',')[0].trim() === firstField;
}

/** Parses the whole output of one `--query-gpu` run (or one tick of a `-lms` stream). */
export function parseGpuQueryCsv(
  text: string,
  fields: readonly GpuQueryField[] = GPU_QUERY_FIELDS,
): GpuQueryOutcome {
  const known = classifyNvidiaSmiError(text);
  if (known) return known;

  const gpus: GpuInfo[] = [];
  const unavailable: UnavailableField[] = [];
  const warnings: string[] = [];
  const garbage: string[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || isHeaderLine(line, fields[0])) continue;
    const row = parseGpuRow(line, fields);
    if (row) {
      gpus.push(row.gpu);
      unavailable.push(...row.unavailable);
      continue;
    }
    const handle = DEVICE_HANDLE_ERROR.exec(line);
    if (handle) {
      warnings.push(`nvidia-smi cannot open the GPU at ${handle[1]}: ${handle[2]}`);
      continue;
    }
    garbage.push(line);
  }
  if (gpus.length === 0) {
    if (warnings.length > 0) return { ok: false, kind: 'deviceError', reason: warnings.join('; ') };
    if (garbage.length > 0) {
      return {
        ok: false,
        kind: 'unknownFormat',
        reason: `nvidia-smi printed an unexpected format: "${excerpt(garbage[0])}"`,
      };
    }
    return { ok: false, kind: 'empty', reason: 'nvidia-smi printed no GPU rows' };
  }
  for (const g of garbage) warnings.push(`ignored an unexpected nvidia-smi line: "${excerpt(g)}"`);
  gpus.sort((a, b) => a.index - b.index);
  return { ok: true, gpus, unavailable, warnings };
}

/** One `--query-compute-apps=gpu_uuid,pid,used_memory` row. */
export function parseComputeAppRow(line: string): GpuProcess | null {
  const parts = line.split(',').map((p) => p.trim());
  if (parts.length !== COMPUTE_APPS_QUERY_FIELDS.length) return null;
  const [uuid, pidText, memText] = parts;
  if (uuid === '' || !/^\d+$/.test(pidText)) return null;
  const mem = numberOf(cell(memText));
  if (mem === undefined) return null;
  return { gpuUuid: uuid, pid: Number(pidText), usedMemoryMiB: mem };
}

/** Parses one `--query-compute-apps` run. No rows is a valid answer: nothing is running. */
export function parseComputeAppsCsv(text: string): ComputeAppsOutcome {
  const known = classifyNvidiaSmiError(text);
  // "No devices were found" leaves nothing to attribute, which is an empty answer here.
  if (known && known.kind !== 'noDevices') return known;
  const processes: GpuProcess[] = [];
  const garbage: string[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (
      line === '' ||
      isHeaderLine(line, COMPUTE_APPS_QUERY_FIELDS[0]) ||
      /^No running (?:compute )?processes found/i.test(line)
    )
      continue;
    if (known) continue;
    const row = parseComputeAppRow(line);
    if (row) processes.push(row);
    else garbage.push(line);
  }
  if (processes.length === 0 && garbage.length > 0) {
    return {
      ok: false,
      kind: 'unknownFormat',
      reason: `nvidia-smi printed an unexpected format: "${excerpt(garbage[0])}"`,
    };
  }
  return {
    ok: true,
    processes,
    warnings: garbage.map((g) => `ignored an unexpected nvidia-smi line: "${excerpt(g)}"`),
  };
}

/**
 * The CUDA version the driver supports, from the header of a plain `nvidia-smi` run
 * (`| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |`). No query field
 * gives it. Null when the header says `N/A` or is absent.
 */
export function parseCudaVersion(text: string): string | null {
  const m = /CUDA Version:\s*(\d+(?:\.\d+)*)/.exec(text);
  return m ? m[1] : null;
}
