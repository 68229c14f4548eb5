// The TF.js engine process: JSON-RPC on the socket the client passes as fd 3 (protocolPipe.ts),
// read by a worker thread that also ends the engine when the client is gone. stdioGuard must be
// the first import so what tfjs or user code prints is captured from the start.
import { flushOutput, setOutputSink, writeRealStderr } from './stdioGuard';
import { openProtocolPipe } from './protocolPipe';
import {
  createMessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-jsonrpc/node';
import { ErrorCodes } from '../protocol/errors';
import {
  hookAttachRequest,
  hookDetachRequest,
  hookEventNotification,
  initializeRequest,
  logNotification,
  modelForwardRequest,
  modelLoadRequest,
  modelSummaryRequest,
  modelTreeRequest,
  outputNotification,
  profileRunRequest,
  shutdownRequest,
  systemInfoRequest,
  tensorInspectRequest,
  trainDiagnoseRequest,
  trainDiagnosisNotification,
  trainProgressNotification,
  trainStartRequest,
  trainStopRequest,
} from '../protocol/messages';
import type { EngineErrorData } from '../protocol/errors';
import { setListenerErrorHandler } from './tfjs/callInterceptor';
import { EngineFailure, messageOf } from './tfjs/engineError';
import { TfjsEngine } from './tfjs/tfjsEngine';
import { mapStackText, userFrames } from './tfjs/userCode';

/** tfjs stacks are deep; keep enough frames to reach the user's own. */
const STACK_TRACE_LIMIT = 60;
/** Exit code for a stream that no longer splits into frames (python/.../watchdog.py too). */
const EXIT_PROTOCOL_DESYNC = 3;
/** A client writes each frame whole: this long mid-frame without a byte is a wrong Content-Length. */
const PARTIAL_FRAME_TIMEOUT_MS = 10_000;

Error.stackTraceLimit = STACK_TRACE_LIMIT;

const pipe = openProtocolPipe();
const reader = new StreamMessageReader(pipe.input);
reader.partialMessageTimeout = PARTIAL_FRAME_TIMEOUT_MS;
const connection = createMessageConnection(reader, new StreamMessageWriter(pipe.output));

// Batched user output goes first, so it keeps its order with the events around it.
const engine = new TfjsEngine({
  hookEvent: (e) => (flushOutput(), void connection.sendNotification(hookEventNotification, e)),
  trainProgress: (p) => (
    flushOutput(),
    void connection.sendNotification(trainProgressNotification, p)
  ),
  trainDiagnosis: (d) => (
    flushOutput(),
    void connection.sendNotification(trainDiagnosisNotification, d)
  ),
});

setOutputSink(
  (stream, text, runId) =>
    void connection.sendNotification(outputNotification, { runId, stream, text }),
  () => pipe.queuedBytes(),
  () => engine.activeRunId,
);

function log(level: 'error' | 'warn' | 'info' | 'debug', message: string): void {
  void connection.sendNotification(logNotification, { level, message });
}

setListenerErrorHandler((err) =>
  log('warn', `hook/instrumentation error (model unaffected): ${messageOf(err)}`),
);

// Never die silently on a stray user error (the wasm glue's re-throwers are removed in backend.ts).
process.on('uncaughtException', (err) => {
  log('error', `uncaught exception: ${mapStackText(err?.stack ?? String(err))}`);
});
process.on('unhandledRejection', (reason) => {
  const text =
    reason instanceof Error ? mapStackText(reason.stack ?? reason.message) : String(reason);
  log('error', `unhandled promise rejection: ${text}`);
});

function toResponseError(err: unknown): ResponseError<EngineErrorData> {
  if (err instanceof ResponseError) return err as ResponseError<EngineErrorData>;
  if (err instanceof EngineFailure) return new ResponseError(err.code, err.message, err.data);
  const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
  log('error', `internal error: ${mapStackText(stack)}`);
  return new ResponseError(ErrorCodes.internal, `TF.js engine bug: ${messageOf(err)}`, {
    kind: 'internal',
  });
}

function handle<P, R>(method: string, fn: (p: P) => R | Promise<R>): (p: P) => Promise<R> {
  return async (p: P) => {
    const file = (p as { file?: unknown } | undefined)?.file;
    pipe.doing(`running ${method}${typeof file === 'string' ? ` of ${file}` : ''}`);
    try {
      return await fn(p);
    } catch (err) {
      throw toResponseError(err);
    } finally {
      // What the request printed arrives before its answer.
      flushOutput();
      pipe.doing(`idle after ${method}`);
    }
  };
}

// User code calling process.exit() must not take the engine down with it: it becomes an error
// of the request (or training run) that ran that code.
const realExit = process.exit.bind(process);
process.exit = ((code?: number | string | null) => {
  const at = userFrames(new Error()).at(-1);
  throw new EngineFailure(
    `User code called process.exit(${code ?? ''})${at ? ` at ${at.file}:${at.line}` : ''}`,
    {
      kind: 'userExit',
      location: at,
      hint: 'Model files are imported by the engine; return or throw instead of exiting.',
    },
  );
}) as typeof process.exit;

let exiting = false;
function exitSoon(code: number): void {
  if (exiting) return;
  exiting = true;
  flushOutput();
  pipe.exitAfterFlush(realExit, code);
}

/** The stream lost its frame boundaries: say so where a person looks, and end. */
function desync(why: string): void {
  writeRealStderr(
    `model-lens engine: protocol desync: ${why}. The client and the engine no longer agree where messages start, so the engine exits.\n`,
  );
  if (exiting) return;
  exiting = true;
  realExit(EXIT_PROTOCOL_DESYNC);
}

connection.onRequest(
  initializeRequest,
  handle(initializeRequest.method, (p) => engine.initialize(p)),
);
connection.onRequest(
  shutdownRequest,
  handle(shutdownRequest.method, async () => {
    await engine.shutdown();
    exitSoon(0);
    return null;
  }),
);
connection.onRequest(
  modelLoadRequest,
  handle(modelLoadRequest.method, (p) => engine.loadModel(p)),
);
connection.onRequest(
  modelTreeRequest,
  handle(modelTreeRequest.method, (p) => engine.tree(p)),
);
connection.onRequest(
  modelSummaryRequest,
  handle(modelSummaryRequest.method, (p) => engine.summary(p)),
);
connection.onRequest(
  modelForwardRequest,
  handle(modelForwardRequest.method, (p) => engine.forward(p)),
);
connection.onRequest(
  tensorInspectRequest,
  handle(tensorInspectRequest.method, (p) => engine.inspect(p)),
);
connection.onRequest(
  profileRunRequest,
  handle(profileRunRequest.method, (p) => engine.profile(p)),
);
connection.onRequest(
  hookAttachRequest,
  handle(hookAttachRequest.method, (p) => engine.attachHook(p)),
);
connection.onRequest(
  hookDetachRequest,
  handle(hookDetachRequest.method, (p) => engine.detachHook(p)),
);
connection.onRequest(
  trainStartRequest,
  handle(trainStartRequest.method, (p) => engine.startTrain(p)),
);
connection.onRequest(
  trainStopRequest,
  handle(trainStopRequest.method, (p) => engine.stopTrain(p)),
);
connection.onRequest(
  trainDiagnoseRequest,
  handle(trainDiagnoseRequest.method, (p) => engine.diagnose(p)),
);
connection.onRequest(
  systemInfoRequest,
  handle(systemInfoRequest.method, () => engine.systemInfo()),
);

// The client going away (input closed) must not leave an orphaned engine behind; when user code
// blocks this thread, the pipe worker ends the process instead.
pipe.onClosed(() => exitSoon(0));
// A header error (no Content-Length, not a number, a line that is no header) means the byte
// stream cannot be trusted from here on. A well-framed body that is not JSON was consumed whole:
// the stream is still in step, so it is only reported.
reader.onError((err) => {
  if (err instanceof SyntaxError)
    writeRealStderr(`model-lens engine: ignored a message that is not JSON: ${err.message}\n`);
  else desync(messageOf(err));
});
reader.onPartialMessage((info) =>
  desync(
    `no byte for ${Math.round(info.waitingTime / 1000)} s in the middle of a frame; the declared Content-Length is longer than what was sent`,
  ),
);
// The reader waits silently forever on bytes that never complete a header (no blank line after
// them); its buffer's size is the only place that shows it. Same limit as a partial body.
const readerBuffer = (reader as unknown as { buffer?: { numberOfBytes?: number } }).buffer;
let stuckBytes = 0;
let stuckSince = 0;
setInterval(() => {
  const bytes = readerBuffer?.numberOfBytes ?? 0;
  if (bytes === 0 || bytes !== stuckBytes) {
    stuckBytes = bytes;
    stuckSince = Date.now();
  } else if (Date.now() - stuckSince >= PARTIAL_FRAME_TIMEOUT_MS) {
    desync(
      `${bytes} bytes have not made a message for ${Math.round(PARTIAL_FRAME_TIMEOUT_MS / 1000)} s (no complete header)`,
    );
  }
}, PARTIAL_FRAME_TIMEOUT_MS / 10).unref();
connection.onError(([err]) =>
  writeRealStderr(`model-lens tfjs engine: protocol error: ${messageOf(err)}\n`),
);
connection.listen();
