// A worker thread that owns the TF.js engine's protocol socket and watches over the process.
// The main thread runs user code and can be blocked for as long as a forward pass loops; this
// thread keeps reading, so the end of the input, the death of the client and a process grown
// past its memory ceiling are noticed and the engine (with what user code forked) is ended
// instead of orphaned. Bundled on its own (dist/enginePipe.js): it loads nothing of tfjs.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import type { PipeWorkerData, ToMain, ToWorker } from './pipeMessages';
import { PIPE_QUEUED_BYTES_INDEX } from './pipeMessages';

/** How often the parent process and the memory size are checked. */
const WATCH_INTERVAL_MS = 500;
/** After the input ends, an idle main thread exits at once; this long later it is stuck in user
 * code and the worker ends the process itself. */
const INPUT_CLOSED_GRACE_MS = 2_000;

const data = workerData as PipeWorkerData;
const port = parentPort!;
const queued = new Int32Array(data.counters);
const socket = new net.Socket({ fd: data.fd, readable: true, writable: true });
/** What the main thread said it is doing (a request and its file), for the messages below. */
let doing = 'idle';

function publishQueued(): void {
  Atomics.store(queued, PIPE_QUEUED_BYTES_INDEX, Math.min(socket.writableLength, 2 ** 31 - 1));
}

function post(message: ToMain): void {
  port.postMessage(message);
}

/** Pids in this process's group other than itself, from /proc (Linux); [] elsewhere. */
function groupMembers(): number[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === process.pid) out.push(Number(name));
    } catch {
      // Gone while listing.
    }
  }
  return out;
}

/** Ends the whole engine from this thread, whatever the main thread is doing. */
function endEngine(message: string): never {
  try {
    fs.writeSync(2, `model-lens engine: ${message}\n`);
  } catch {
    // stderr closed: nothing more to say.
  }
  if (data.ownGroup) {
    for (const pid of groupMembers()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    try {
      process.kill(-process.pid, 'SIGKILL');
    } catch {
      // Not a group leader after all.
    }
  }
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

socket.on('data', (chunk: Buffer) => post({ type: 'data', data: chunk }));
socket.on('error', () => undefined); // the close that follows is what matters
socket.once('close', () => {
  post({ type: 'closed' });
  setTimeout(
    () =>
      endEngine(
        `the client closed the engine's input while user code was running (${doing}); exiting so the engine is not left behind`,
      ),
    INPUT_CLOSED_GRACE_MS,
  );
});
socket.on('drain', publishQueued);

port.on('message', (m: ToWorker) => {
  if (m.type === 'write') {
    socket.write(m.data, publishQueued);
    publishQueued();
  } else if (m.type === 'doing') {
    doing = m.text;
  } else if (m.type === 'flush') {
    // Everything posted before this message has been handed to the socket; wait for it to leave.
    socket.write('', () => post({ type: 'flushed' }));
  }
});

/** The parent at start: a launcher may sit between the client (data.parentPid) and the engine. */
const startParent = process.ppid;

function clientGone(): boolean {
  if (process.ppid !== startParent) return true;
  if (!data.parentPid || data.parentPid === startParent) return false;
  try {
    process.kill(data.parentPid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

setInterval(() => {
  if (clientGone()) {
    endEngine(
      `the client process (pid ${data.parentPid || startParent}) is gone; exiting so the engine is not left behind (was ${doing})`,
    );
  }
  if (data.memoryLimitMB > 0) {
    const rss = process.memoryUsage.rss();
    if (rss > data.memoryLimitMB * 2 ** 20) {
      endEngine(
        `went over its memory limit of ${data.memoryLimitMB} MB (${Math.round(rss / 2 ** 20)} MB in use) while ${doing}; stopped (out of memory)`,
      );
    }
  }
}, WATCH_INTERVAL_MS);
