// One error type for everything the engine refuses or fails at; main.ts turns it into a
// JSON-RPC ResponseError carrying EngineErrorData, so clients never have to parse messages.
import { ERROR_CODE_OF_KIND } from '../../protocol/errors';
import type { EngineErrorData, EngineErrorKind, ErrorCode } from '../../protocol/errors';

type Code = ErrorCode;

export class EngineFailure extends Error {
  readonly code: Code;
  readonly data: EngineErrorData;

  constructor(message: string, data: EngineErrorData, code?: Code) {
    super(message);
    this.name = 'EngineFailure';
    this.data = data;
    this.code = code ?? ERROR_CODE_OF_KIND[data.kind];
  }
}

export function fail(
  kind: EngineErrorKind,
  message: string,
  extra: Omit<EngineErrorData, 'kind'> = {},
): never {
  throw new EngineFailure(message, { kind, ...extra });
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : JSON.stringify(err);
}
