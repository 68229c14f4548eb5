// The TF.js engine's end of the protocol: a socket the client passes as fd 3, read and written
// by a worker thread (pipeWorker.ts) so fd 1 stays plain output that stray writes (a native
// addon, a child process inheriting stdout, fs.writeSync(1, ...)) cannot corrupt, and so the
// engine is ended even while user code blocks the main thread.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import {
  PIPE_COUNTERS,
  PIPE_QUEUED_BYTES_INDEX,
  type PipeWorkerData,
  type ToMain,
  type ToWorker,
} from './pipeMessages';

/** Env names shared with EngineClient (src/client/engineClient.ts). */
const PARENT_PID_ENV = 'MODEL_LENS_PARENT_PID';
const MEMORY_LIMIT_ENV = 'MODEL_LENS_MEMORY_LIMIT_MB';
export const PROTOCOL_FD = 3;
/** Most time given to queued frames to leave before the process exits anyway. */
const EXIT_FLUSH_MAX_MS = 2_000;
/** Taken before main.ts turns process.exit into an error for user code. */
const realExit = process.exit.bind(process);

export interface ProtocolPipe {
  input: PassThrough;
  output: Writable;
  /** Tells the watchdog what the engine is doing, for its messages. */
  doing(text: string): void;
  /** Bytes written that the client has not read yet (0 when it keeps up). */
  queuedBytes(): number;
  /** Called once when the client closes the input. */
  onClosed(listener: () => void): void;
  /** Lets queued frames leave, then exits the process. */
  exitAfterFlush(exit: (code: number) => never, code: number): void;
}

/** Whether this process leads its own process group (pgrp == pid in /proc/self/stat). */
function leadsOwnGroup(): boolean {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === process.pid;
  } catch {
    return false;
  }
}

export function openProtocolPipe(): ProtocolPipe {
  try {
    if (!fs.fstatSync(PROTOCOL_FD).isSocket()) throw new Error('not a socket');
  } catch (err) {
    fs.writeSync(
      2,
      `model-lens tfjs engine: the protocol socket (fd ${PROTOCOL_FD}) is missing (${(err as Error).message}); ` +
        'start the engine through EngineClient.\n',
    );
    realExit(2);
  }
  const counters = new SharedArrayBuffer(PIPE_COUNTERS * Int32Array.BYTES_PER_ELEMENT);
  const queued = new Int32Array(counters);
  const parentPid = Number(process.env[PARENT_PID_ENV]) || 0;
  const memoryLimitMB = Number(process.env[MEMORY_LIMIT_ENV]) || 0;
  delete process.env[PARENT_PID_ENV];
  delete process.env[MEMORY_LIMIT_ENV];
  const workerData: PipeWorkerData = {
    fd: PROTOCOL_FD,
    parentPid,
    memoryLimitMB,
    ownGroup: leadsOwnGroup(),
    counters,
  };
  const worker = new Worker(path.join(__dirname, 'enginePipe.js'), {
    workerData,
    stdout: false,
    stderr: false,
  });
  const send = (m: ToWorker): void => worker.postMessage(m);
  const input = new PassThrough();
  const closedListeners: (() => void)[] = [];
  let flushed: (() => void) | undefined;
  worker.on('message', (m: ToMain) => {
    if (m.type === 'data') input.write(Buffer.from(m.data));
    else if (m.type === 'closed') {
      input.end();
      for (const l of closedListeners.splice(0)) l();
    } else if (m.type === 'flushed') flushed?.();
  });
  worker.on('error', (err) => {
    fs.writeSync(2, `model-lens tfjs engine: the protocol worker failed: ${err.stack ?? err}\n`);
    realExit(1);
  });
  const output = new Writable({
    write(chunk: Buffer, _enc, cb): void {
      send({ type: 'write', data: chunk });
      cb();
    },
  });
  return {
    input,
    output,
    doing: (text) => send({ type: 'doing', text }),
    queuedBytes: () => Atomics.load(queued, PIPE_QUEUED_BYTES_INDEX),
    onClosed: (l) => closedListeners.push(l),
    exitAfterFlush(exit, code) {
      flushed = () => exit(code);
      send({ type: 'flush' });
      setTimeout(() => exit(code), EXIT_FLUSH_MAX_MS).unref();
    },
  };
}
