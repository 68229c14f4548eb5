// One error type for everything the engine refuses or fails at; main.ts turns it into a
// JSON-RPC ResponseError carrying EngineErrorData, so clients never have to parse messages.
import { ErrorCodes } from '../../protocol/errors';
import type { EngineErrorData, EngineErrorKind } from '../../protocol/errors';

type Code = (typeof ErrorCodes)[keyof typeof ErrorCodes];

const CODE_OF_KIND: Partial<Record<EngineErrorKind, Code>> = {
  untrusted: ErrorCodes.environment,
  runtimeMissing: ErrorCodes.environment,
  unsupported: ErrorCodes.environment,
  notLoaded: ErrorCodes.notFound,
  unknownPath: ErrorCodes.notFound,
  unknownHook: ErrorCodes.notFound,
  badRequest: ErrorCodes.notFound,
  cancelled: ErrorCodes.cancelled,
  internal: ErrorCodes.internal,
};

export class EngineFailure extends Error {
  readonly code: Code;
  readonly data: EngineErrorData;

  constructor(message: string, data: EngineErrorData, code?: Code) {
    super(message);
    this.name = 'EngineFailure';
    this.data = data;
    this.code = code ?? CODE_OF_KIND[data.kind] ?? ErrorCodes.userError;
  }
}

export function fail(kind: EngineErrorKind, message: string, extra: Omit<EngineErrorData, 'kind'> = {}): never {
  throw new EngineFailure(message, { kind, ...extra });
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : JSON.stringify(err);
}
