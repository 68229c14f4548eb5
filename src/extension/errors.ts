// Duck-typed checks for EngineError: the class itself lives in the lazily loaded client module,
// and errors raised before it is loaded (untrusted workspace) are shaped the same way.
import type { EngineErrorData, EngineErrorKind } from '../protocol/errors';

export interface EngineErrorLike extends Error {
  code?: number;
  data: EngineErrorData;
}

export function isEngineError(err: unknown): err is EngineErrorLike {
  return (
    err instanceof Error &&
    typeof (err as Partial<EngineErrorLike>).data === 'object' &&
    (err as Partial<EngineErrorLike>).data !== null &&
    typeof (err as EngineErrorLike).data.kind === 'string'
  );
}

export function engineErrorKind(err: unknown): EngineErrorKind | undefined {
  return isEngineError(err) ? err.data.kind : undefined;
}

/** An error raised by the extension itself in the engine's vocabulary. */
export function extensionError(message: string, data: EngineErrorData): EngineErrorLike {
  const err = new Error(message) as EngineErrorLike;
  err.name = 'EngineError';
  err.data = data;
  return err;
}
