// The TF.js engine process: JSON-RPC over stdio. stdioGuard must be the first import so nothing
// tfjs or user code prints can reach fd 1 before the protocol owns it.
import { protocolStdout, setOutputSink, writeRealStderr } from './stdioGuard';
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
import { mapStackText } from './tfjs/userCode';

/** tfjs stacks are deep; keep enough frames to reach the user's own. */
const STACK_TRACE_LIMIT = 60;
/** Time given to the last response to leave before the process exits. */
const SHUTDOWN_FLUSH_MS = 50;

Error.stackTraceLimit = STACK_TRACE_LIMIT;

const connection = createMessageConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(protocolStdout));

const engine = new TfjsEngine({
  hookEvent: (e) => void connection.sendNotification(hookEventNotification, e),
  trainProgress: (p) => void connection.sendNotification(trainProgressNotification, p),
  trainDiagnosis: (d) => void connection.sendNotification(trainDiagnosisNotification, d),
});

setOutputSink((stream, text) => {
  void connection.sendNotification(outputNotification, { runId: engine.activeRunId, stream, text });
});

function log(level: 'error' | 'warn' | 'info' | 'debug', message: string): void {
  void connection.sendNotification(logNotification, { level, message });
}

setListenerErrorHandler((err) => log('warn', `hook/instrumentation error (model unaffected): ${messageOf(err)}`));

// Never die silently on a stray user error (the wasm glue's re-throwers are removed in backend.ts).
process.on('uncaughtException', (err) => {
  log('error', `uncaught exception: ${mapStackText(err?.stack ?? String(err))}`);
});
process.on('unhandledRejection', (reason) => {
  const text = reason instanceof Error ? mapStackText(reason.stack ?? reason.message) : String(reason);
  log('error', `unhandled promise rejection: ${text}`);
});

function toResponseError(err: unknown): ResponseError<EngineErrorData> {
  if (err instanceof ResponseError) return err as ResponseError<EngineErrorData>;
  if (err instanceof EngineFailure) return new ResponseError(err.code, err.message, err.data);
  const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
  log('error', `internal error: ${mapStackText(stack)}`);
  return new ResponseError(ErrorCodes.internal, `TF.js engine bug: ${messageOf(err)}`, { kind: 'internal' });
}

function handle<P, R>(fn: (p: P) => R | Promise<R>): (p: P) => Promise<R> {
  return async (p: P) => {
    try {
      return await fn(p);
    } catch (err) {
      throw toResponseError(err);
    }
  };
}

// User code calling process.exit() must not take the engine down with it: it becomes an error
// of the request (or training run) that ran that code.
const realExit = process.exit.bind(process);
process.exit = ((code?: number | string | null) => {
  throw new EngineFailure(`User code called process.exit(${code ?? ''})`, {
    kind: 'userExit',
    hint: 'Model files are imported by the engine; return or throw instead of exiting.',
  });
}) as typeof process.exit;

let exiting = false;
function exitSoon(code: number): void {
  if (exiting) return;
  exiting = true;
  setTimeout(() => realExit(code), SHUTDOWN_FLUSH_MS);
}

connection.onRequest(initializeRequest, handle((p) => engine.initialize(p)));
connection.onRequest(
  shutdownRequest,
  handle(async () => {
    await engine.shutdown();
    exitSoon(0);
    return null;
  }),
);
connection.onRequest(modelLoadRequest, handle((p) => engine.loadModel(p)));
connection.onRequest(modelTreeRequest, handle((p) => engine.tree(p)));
connection.onRequest(modelSummaryRequest, handle((p) => engine.summary(p)));
connection.onRequest(modelForwardRequest, handle((p) => engine.forward(p)));
connection.onRequest(tensorInspectRequest, handle((p) => engine.inspect(p)));
connection.onRequest(profileRunRequest, handle((p) => engine.profile(p)));
connection.onRequest(hookAttachRequest, handle((p) => engine.attachHook(p)));
connection.onRequest(hookDetachRequest, handle((p) => engine.detachHook(p)));
connection.onRequest(trainStartRequest, handle((p) => engine.startTrain(p)));
connection.onRequest(trainStopRequest, handle((p) => engine.stopTrain(p)));
connection.onRequest(trainDiagnoseRequest, handle((p) => engine.diagnose(p)));
connection.onRequest(systemInfoRequest, handle(() => engine.systemInfo()));

// The client going away (pipe closed) must not leave an orphaned engine behind.
connection.onClose(() => exitSoon(0));
process.stdin.on('end', () => exitSoon(0));
connection.onError(([err]) => writeRealStderr(`model-lens tfjs engine: protocol error: ${messageOf(err)}\n`));
connection.listen();
