// Test helpers that look at processes the way the kernel sees them (/proc: process group,
// parent pid, state), never by name, and drive a real engine over raw pipes.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Duplex, Writable } from 'node:stream';

export const ROOT = path.resolve(__dirname, '..');
export const BIN = path.join(ROOT, 'bin', 'model-lens.js');
/** The interpreter the PyTorch cases use: the first of MODEL_LENS_TEST_PYTHONS, else the default. */
export const TEST_PYTHON = (process.env.MODEL_LENS_TEST_PYTHONS ?? '')
  .split(path.delimiter)
  .find(Boolean);

interface ProcStat {
  pid: number;
  state: string;
  ppid: number;
  pgid: number;
}

function stat(pid: number): ProcStat | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pid, state: f[0], ppid: Number(f[1]), pgid: Number(f[2]) };
  } catch {
    return undefined;
  }
}

/** Live processes (zombies are dead, only not yet reaped). */
function live(): ProcStat[] {
  return fs
    .readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map((n) => stat(Number(n)))
    .filter((s): s is ProcStat => s !== undefined && s.state !== 'Z');
}

export function groupMembers(pgid: number): number[] {
  return live()
    .filter((s) => s.pgid === pgid)
    .map((s) => s.pid);
}

export function childrenOf(ppid: number): number[] {
  return live()
    .filter((s) => s.ppid === ppid)
    .map((s) => s.pid);
}

export function pgidOf(pid: number): number | undefined {
  return stat(pid)?.pgid;
}

export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | undefined | false,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function frame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, 'ascii'), body]);
}

/** Splits a byte stream into JSON-RPC messages (as a client would), keeping what is left. */
export class FrameParser {
  private buf = Buffer.alloc(0);
  readonly messages: Record<string, unknown>[] = [];
  corrupt: string | undefined;

  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const header = this.buf.subarray(0, end).toString('latin1');
      const m = /^Content-Length: (\d+)$/im.exec(header);
      if (!m) {
        this.corrupt ??= `not a header: ${JSON.stringify(header.slice(0, 80))}`;
        return;
      }
      const len = Number(m[1]);
      if (this.buf.length < end + 4 + len) return;
      const body = this.buf.subarray(end + 4, end + 4 + len).toString('utf8');
      this.buf = this.buf.subarray(end + 4 + len);
      try {
        this.messages.push(JSON.parse(body));
      } catch {
        this.corrupt ??= `not JSON: ${JSON.stringify(body.slice(0, 80))}`;
      }
    }
  }
}

export type EngineKind = 'pytorch' | 'tfjs';

/** An engine started as EngineClient starts it (own process group, protocol pipes), raw. */
export interface RawEngine {
  child: ChildProcess;
  input: Writable;
  parser: FrameParser;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  response(id: number, timeoutMs: number): Promise<Record<string, unknown>>;
}

export function startRawEngine(kind: EngineKind, env: Record<string, string> = {}): RawEngine {
  const common = { detached: true, env: { ...process.env, OMP_NUM_THREADS: '1', ...env } };
  const child =
    kind === 'tfjs'
      ? spawn(process.execPath, [path.join(ROOT, 'dist', 'engine.js')], {
          ...common,
          stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        })
      : spawn(TEST_PYTHON ?? 'python3', ['-u', '-m', 'model_lens_engine'], {
          ...common,
          cwd: path.join(ROOT, 'python'),
          env: {
            ...common.env,
            PYTHONPATH: path.join(ROOT, 'python'),
            PYTHONDONTWRITEBYTECODE: '1',
          },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
  const proto = (kind === 'tfjs' ? child.stdio[3] : undefined) as Duplex | undefined;
  const input = proto ?? child.stdin!;
  const output = proto ?? child.stdout!;
  input.on('error', () => undefined);
  const parser = new FrameParser();
  output.on('data', (d: Buffer) => parser.push(d));
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  if (kind === 'tfjs') child.stdout!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    input,
    parser,
    stderr: () => err,
    exited,
    response: (id, timeoutMs) =>
      waitFor(`response ${id} (stderr: ${err.slice(-500)})`, timeoutMs, () =>
        parser.messages.find((m) => m.id === id && ('result' in m || 'error' in m)),
      ),
  };
}

export function initializeFrame(id: number, cwd = ROOT): Buffer {
  return frame({
    jsonrpc: '2.0',
    id,
    method: 'engine/initialize',
    params: { protocolVersion: '1.0', clientName: 'test', clientVersion: '0', trusted: true, cwd },
  });
}

/** Kills what a failed test left behind, by process group. */
export function killGroup(pgid: number | undefined): void {
  if (!pgid) return;
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // Already gone: the normal case.
  }
}

/** The real CLI, started as a user would; `exited` resolves with its exit code or signal. */
export function cli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, stderr: () => stderr };
}

/** Runs the CLI to its end; a CLI that never exits fails the test at the runner's timeout. */
export async function cliRun(args: string[], env: Record<string, string> = {}) {
  const run = cli(args, env);
  let stdout = '';
  run.child.stdout!.on('data', (d) => (stdout += d));
  const exit = await run.exited;
  return { ...exit, stdout, stderr: run.stderr() };
}
