// Imported first by main.ts, before tfjs or user code can print: fd 1 carries protocol frames
// only. Everything written through process.stdout / console is captured and forwarded as
// `output` notifications (buffered until the connection exists); stderr is forwarded and still
// reaches the real stderr for whoever reads it.
import { Writable } from 'node:stream';

type Sink = (stream: 'stdout' | 'stderr', text: string) => void;

/** Most text kept while no connection exists yet (start-up banners). */
const PENDING_OUTPUT_MAX_CHARS = 64 * 1024;

const realStdoutWrite = process.stdout.write.bind(process.stdout) as (
  chunk: string | Uint8Array,
  cb?: (err?: Error | null) => void,
) => boolean;
const realStderrWrite = process.stderr.write.bind(process.stderr) as typeof realStdoutWrite;

let sink: Sink | null = null;
const pending: [stream: 'stdout' | 'stderr', text: string][] = [];
let pendingChars = 0;

function toText(chunk: unknown, encoding?: unknown): string {
  if (typeof chunk === 'string') return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return String(chunk);
}

function forward(stream: 'stdout' | 'stderr', text: string): void {
  if (sink) {
    try {
      sink(stream, text);
    } catch {
      // Forwarding must never throw into user code.
    }
    return;
  }
  if (pendingChars + text.length <= PENDING_OUTPUT_MAX_CHARS) {
    pending.push([stream, text]);
    pendingChars += text.length;
  }
}

function interceptor(stream: 'stdout' | 'stderr') {
  return function write(chunk: unknown, encodingOrCb?: unknown, cb?: unknown): boolean {
    forward(stream, toText(chunk, encodingOrCb));
    if (stream === 'stderr') realStderrWrite(toText(chunk, encodingOrCb));
    const done = typeof encodingOrCb === 'function' ? encodingOrCb : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  };
}

process.stdout.write = interceptor('stdout') as typeof process.stdout.write;
process.stderr.write = interceptor('stderr') as typeof process.stderr.write;

/** The only path to the real fd 1: give it to the protocol writer. */
export const protocolStdout = new Writable({
  write(chunk: Buffer, _enc, cb): void {
    realStdoutWrite(chunk, (err) => cb(err ?? null));
  },
});

/** Start forwarding captured output; flushes what was printed before. */
export function setOutputSink(next: Sink): void {
  sink = next;
  for (const [stream, text] of pending.splice(0)) forward(stream, text);
  pendingChars = 0;
}

/** Engine diagnostics that must not go through the capture (e.g. while the sink fails). */
export function writeRealStderr(text: string): void {
  realStderrWrite(text);
}
