// Finding and running nvidia-smi once. Everything is asynchronous and bounded by a timeout, and a
// child that outlives its timeout is killed with its whole process group, so a hung driver call
// can neither block the caller nor leave a process behind.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { killProcessGroup } from '../client/processGroup';
import { describeExit } from '../shared/processExit';
import {
  GPU_QUERY_FIELDS,
  OPTIONAL_GPU_QUERY_FIELDS,
  classifyNvidiaSmiError,
  computeAppsQueryArgs,
  gpuQueryArgs,
  parseComputeAppsCsv,
  parseCudaVersion,
  parseGpuQueryCsv,
} from './nvidiaSmiParse';
import type {
  ComputeAppsOutcome,
  GpuQueryField,
  GpuQueryOutcome,
  NvidiaSmiFailure,
} from './nvidiaSmiParse';

/** A one-shot query that takes longer than this is treated as hung (a wedged driver can block NVML for minutes). */
export const NVIDIA_SMI_ONESHOT_TIMEOUT_MS = 10_000;
/** Output kept from one run; a query for 8 GPUs is under 1 KiB. */
export const NVIDIA_SMI_MAX_OUTPUT_BYTES = 1024 * 1024;

const IS_WINDOWS = process.platform === 'win32';
const EXECUTABLE_NAME = IS_WINDOWS ? 'nvidia-smi.exe' : 'nvidia-smi';
/** The Windows driver installs nvidia-smi here without always putting it on PATH. */
const WINDOWS_FALLBACK_DIRS = [
  path.join(process.env.SystemRoot ?? 'C:\\Windows', 'System32'),
  path.join(process.env.ProgramFiles ?? 'C:\\Program Files', 'NVIDIA Corporation', 'NVSMI'),
];

export type ResolvedExecutable = { ok: true; path: string } | NvidiaSmiFailure;

async function checkExecutable(file: string): Promise<'ok' | 'missing' | 'notExecutable'> {
  try {
    const st = await fs.promises.stat(file);
    if (!st.isFile()) return 'notExecutable';
  } catch {
    return 'missing';
  }
  try {
    await fs.promises.access(file, fs.constants.X_OK);
    return 'ok';
  } catch {
    return 'notExecutable';
  }
}

/**
 * Where nvidia-smi is: `explicitPath` when given (a bare name is looked up on PATH), else the first
 * executable `nvidia-smi` on PATH (plus the driver's install folders on Windows).
 */
export async function resolveNvidiaSmi(
  explicitPath?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ResolvedExecutable> {
  if (explicitPath && (explicitPath.includes('/') || explicitPath.includes(path.sep))) {
    const state = await checkExecutable(explicitPath);
    if (state === 'ok') return { ok: true, path: explicitPath };
    if (state === 'missing')
      return { ok: false, kind: 'notFound', reason: `nvidia-smi not found at ${explicitPath}` };
    return {
      ok: false,
      kind: 'notExecutable',
      reason: `${explicitPath} is not an executable file`,
    };
  }
  const name = explicitPath || EXECUTABLE_NAME;
  const dirs = (env.PATH ?? env.Path ?? '').split(path.delimiter).filter((d) => d !== '');
  if (IS_WINDOWS) dirs.push(...WINDOWS_FALLBACK_DIRS);
  let notExecutable: string | undefined;
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    const state = await checkExecutable(candidate);
    if (state === 'ok') return { ok: true, path: candidate };
    if (state === 'notExecutable' && !notExecutable) notExecutable = candidate;
  }
  if (notExecutable)
    return { ok: false, kind: 'notExecutable', reason: `${notExecutable} is not executable` };
  return {
    ok: false,
    kind: 'notFound',
    reason: `${name} is not on PATH (no NVIDIA driver installed?)`,
  };
}

export interface CapturedRun {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** spawn itself failed (ENOENT, EACCES...). */
  spawnError?: NodeJS.ErrnoException;
}

/** Spawn options shared by every nvidia-smi child. */
export function nvidiaSmiSpawnOptions(env?: NodeJS.ProcessEnv) {
  return {
    stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'],
    // A group of its own so killProcessGroup reaches grandchildren; on Windows detached opens a console.
    detached: !IS_WINDOWS,
    windowsHide: true,
    env: env ?? process.env,
  };
}

/** Runs a command once and collects its output, killing it (and its group) after `timeoutMs`. */
export function runCaptured(
  file: string,
  args: string[],
  timeoutMs: number,
  env?: NodeJS.ProcessEnv,
): Promise<CapturedRun> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    let timedOut = false;
    let child: ChildProcess;
    const finish = (run: Omit<CapturedRun, 'stdout' | 'stderr' | 'timedOut'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ stdout, stderr, timedOut, ...run });
    };
    try {
      child = spawn(file, args, nvidiaSmiSpawnOptions(env));
    } catch (err) {
      resolve({
        stdout,
        stderr,
        code: null,
        signal: null,
        timedOut: false,
        spawnError: err as NodeJS.ErrnoException,
      });
      return;
    }
    const timer = setTimeout(() => {
      timedOut = true;
      killProcessGroup(child);
      // Resolve now: a grandchild holding the pipes open must not keep the caller waiting.
      finish({ code: null, signal: 'SIGKILL' });
    }, timeoutMs);
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      if (stdout.length < NVIDIA_SMI_MAX_OUTPUT_BYTES) stdout += d;
    });
    child.stderr?.on('data', (d: string) => {
      if (stderr.length < NVIDIA_SMI_MAX_OUTPUT_BYTES) stderr += d;
    });
    child.on('error', (err) => finish({ code: null, signal: null, spawnError: err }));
    child.on('close', (code, signal) => finish({ code, signal }));
  });
}

/** Turns a failed or odd run into a failure with a reason, or null when the output should be parsed. */
export function failureOfRun(
  run: CapturedRun,
  file: string,
  timeoutMs: number,
): NvidiaSmiFailure | null {
  if (run.spawnError) {
    const code = run.spawnError.code;
    if (code === 'ENOENT')
      return { ok: false, kind: 'notFound', reason: `nvidia-smi not found at ${file}` };
    if (code === 'EACCES' || code === 'ENOEXEC' || code === 'EPERM') {
      return { ok: false, kind: 'notExecutable', reason: `cannot execute ${file} (${code})` };
    }
    return { ok: false, kind: 'exited', reason: `cannot start ${file}: ${run.spawnError.message}` };
  }
  if (run.timedOut) {
    return {
      ok: false,
      kind: 'timeout',
      reason: `nvidia-smi did not answer within ${timeoutMs / 1000} s (driver hung?)`,
    };
  }
  const known = classifyNvidiaSmiError(`${run.stdout}\n${run.stderr}`);
  if (known) return known;
  if (run.code !== 0) {
    const said = (run.stderr || run.stdout).trim().split('\n')[0] ?? '';
    const how = describeExit(run);
    return {
      ok: false,
      kind: 'exited',
      reason: `nvidia-smi ${how}${said ? `: "${said.slice(0, 160)}"` : ''}`,
    };
  }
  return null;
}

export interface NvidiaSmiOptions {
  /** Path or bare name of nvidia-smi; default: `nvidia-smi` resolved on PATH. */
  nvidiaSmiPath?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs `--query-gpu` once, dropping fields an old driver rejects and asking again. The failure says
 * why when there is no answer; `fields` is what was finally asked.
 */
export async function runGpuQuery(
  file: string,
  timeoutMs: number,
  env?: NodeJS.ProcessEnv,
  initialFields: readonly GpuQueryField[] = GPU_QUERY_FIELDS,
): Promise<{ outcome: GpuQueryOutcome; fields: GpuQueryField[] }> {
  let fields = [...initialFields];
  for (;;) {
    const run = await runCaptured(file, gpuQueryArgs(fields), timeoutMs, env);
    const failed = failureOfRun(run, file, timeoutMs);
    const outcome = failed ?? parseGpuQueryCsv(run.stdout, fields);
    if (!outcome.ok && outcome.kind === 'invalidField' && isDroppable(outcome.field, fields)) {
      fields = fields.filter((f) => f !== outcome.field);
      continue;
    }
    return { outcome, fields };
  }
}

function isDroppable(
  field: string | undefined,
  fields: readonly GpuQueryField[],
): field is GpuQueryField {
  return (
    field !== undefined &&
    (OPTIONAL_GPU_QUERY_FIELDS as readonly string[]).includes(field) &&
    (fields as readonly string[]).includes(field)
  );
}

/** Removes a rejected optional field from a field list; null when it is not one we can do without. */
export function withoutRejectedField(
  fields: readonly GpuQueryField[],
  rejected: string | undefined,
): GpuQueryField[] | null {
  return isDroppable(rejected, fields) ? fields.filter((f) => f !== rejected) : null;
}

/** The CUDA version from the plain `nvidia-smi` header; null when unknown. */
export async function queryCudaVersion(
  file: string,
  timeoutMs: number,
  env?: NodeJS.ProcessEnv,
): Promise<string | null> {
  const run = await runCaptured(file, [], timeoutMs, env);
  if (run.spawnError || run.timedOut) return null;
  return parseCudaVersion(run.stdout);
}

/**
 * Every GPU once, with the CUDA version from the header, for the CLI and for static reports.
 * Never throws: a missing, failing or hung nvidia-smi is a failure with a reason.
 */
export async function queryGpusOnce(options: NvidiaSmiOptions = {}): Promise<GpuQueryOutcome> {
  const timeoutMs = options.timeoutMs ?? NVIDIA_SMI_ONESHOT_TIMEOUT_MS;
  const resolved = await resolveNvidiaSmi(options.nvidiaSmiPath, options.env);
  if (!resolved.ok) return resolved;
  const [{ outcome }, cuda] = await Promise.all([
    runGpuQuery(resolved.path, timeoutMs, options.env),
    queryCudaVersion(resolved.path, timeoutMs, options.env),
  ]);
  if (outcome.ok) for (const g of outcome.gpus) g.cudaVersion = cuda;
  return outcome;
}

/** Processes using each GPU, once. */
export async function queryComputeAppsOnce(
  options: NvidiaSmiOptions = {},
): Promise<ComputeAppsOutcome> {
  const timeoutMs = options.timeoutMs ?? NVIDIA_SMI_ONESHOT_TIMEOUT_MS;
  const resolved = await resolveNvidiaSmi(options.nvidiaSmiPath, options.env);
  if (!resolved.ok) return resolved;
  const run = await runCaptured(resolved.path, computeAppsQueryArgs(), timeoutMs, options.env);
  return failureOfRun(run, resolved.path, timeoutMs) ?? parseComputeAppsCsv(run.stdout);
}
