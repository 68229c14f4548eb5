// Imported first by main.ts, before tfjs or user code can print. Everything written through
// process.stdout / process.stderr / console is captured and forwarded as batched `output`
// notifications (held until the connection exists). The protocol itself is on its own socket
// (protocolPipe.ts), so bytes that bypass these streams and reach fd 1 or 2 directly are plain
// output the client shows as such, never a corrupted frame.

/** `tag` is what was current when the text was written (a training run's id). */
type Sink = (stream: 'stdout' | 'stderr', text: string, tag: string | undefined) => void;

/** Most text kept while no connection exists yet (start-up banners). */
const PENDING_OUTPUT_MAX_CHARS = 64 * 1024;
/** A batch goes out once this big, even from inside a tight loop that never yields. */
const OUTPUT_BATCH_CHARS = 64 * 1024;
/** Otherwise this long after its first text: one notification per burst, not per line. */
const OUTPUT_FLUSH_MS = 20;
/**
 * While the client has this much protocol data unread, further output is counted, not queued:
 * a flood cannot grow the engine without bound, and the count is reported once it catches up.
 */
const OUTPUT_BACKLOG_MAX_BYTES = 32 * 2 ** 20;

const realStderrWrite = process.stderr.write.bind(process.stderr) as (
  chunk: string | Uint8Array,
) => boolean;

let sink: Sink | null = null;
let backlog: () => number = () => 0;
let currentTag: () => string | undefined = () => undefined;
let batchTag: string | undefined;
const pending: [stream: 'stdout' | 'stderr', text: string][] = [];
let pendingChars = 0;
let batchStream: 'stdout' | 'stderr' = 'stdout';
let batch = '';
let timer: NodeJS.Timeout | undefined;
let droppedChars = 0;

function toText(chunk: unknown, encoding?: unknown): string {
  if (typeof chunk === 'string') return chunk;
  if (chunk instanceof Uint8Array) {
    return Buffer.from(chunk).toString(
      typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8',
    );
  }
  return String(chunk);
}

function send(stream: 'stdout' | 'stderr', text: string): void {
  try {
    sink!(stream, text, batchTag);
  } catch {
    // Forwarding must never throw into user code.
  }
}

/** Sends the batch now (before a response, so output arrives before the answer it belongs to). */
export function flushOutput(): void {
  clearTimeout(timer);
  timer = undefined;
  if (!sink || !batch) return;
  const text = batch;
  batch = '';
  if (backlog() > OUTPUT_BACKLOG_MAX_BYTES) {
    droppedChars += text.length;
    return;
  }
  if (droppedChars > 0) {
    send(
      batchStream,
      `[model-lens: ${droppedChars} characters of output were dropped while the client was behind]\n`,
    );
    droppedChars = 0;
  }
  send(batchStream, text);
}

function forward(stream: 'stdout' | 'stderr', text: string): void {
  if (!sink) {
    if (pendingChars + text.length <= PENDING_OUTPUT_MAX_CHARS) {
      pending.push([stream, text]);
      pendingChars += text.length;
    }
    return;
  }
  const tag = currentTag();
  if (stream !== batchStream || tag !== batchTag) {
    flushOutput();
    batchStream = stream;
    batchTag = tag;
  }
  batch += text;
  if (batch.length >= OUTPUT_BATCH_CHARS) flushOutput();
  else timer ??= setTimeout(flushOutput, OUTPUT_FLUSH_MS);
}

function interceptor(stream: 'stdout' | 'stderr') {
  return function write(chunk: unknown, encodingOrCb?: unknown, cb?: unknown): boolean {
    forward(stream, toText(chunk, encodingOrCb));
    const done = typeof encodingOrCb === 'function' ? encodingOrCb : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  };
}

process.stdout.write = interceptor('stdout') as typeof process.stdout.write;
process.stderr.write = interceptor('stderr') as typeof process.stderr.write;

/**
 * Start forwarding captured output; flushes what was printed before. `queuedBytes` says how
 * much the client has not read yet; `tag` what output written now belongs to.
 */
export function setOutputSink(
  next: Sink,
  queuedBytes: () => number,
  tag: () => string | undefined,
): void {
  sink = next;
  backlog = queuedBytes;
  currentTag = tag;
  for (const [stream, text] of pending.splice(0)) forward(stream, text);
  pendingChars = 0;
}

/** Engine diagnostics that must not go through the capture (e.g. while the sink fails). */
export function writeRealStderr(text: string): void {
  realStderrWrite(text);
}
