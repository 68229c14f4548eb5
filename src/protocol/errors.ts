// Errors cross the wire as JSON-RPC errors whose `data` says what went wrong and where, so a
// client can put a diagnostic on the right line or name the layer at fault without parsing text.
import type { SourceLocation } from './types';

/**
 * JSON-RPC error codes used by engines: the server-defined range, plus JSON-RPC's own
 * InvalidParams for a request the engine cannot act on as sent.
 */
export const ErrorCodes = {
  /** The user's file or model is at fault; `data` says where. */
  userError: -32001,
  /** The engine cannot run here (no torch, untrusted workspace, unsupported backend). */
  environment: -32002,
  /** A bug in the engine itself. */
  internal: -32003,
  /** The request named a model, path or hook that does not exist. */
  notFound: -32004,
  /** The request was cancelled or its run was stopped. */
  cancelled: -32800,
  /** The request itself is malformed or not allowed now (JSON-RPC InvalidParams). */
  badRequest: -32602,
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Every `EngineErrorData.kind`; clients switch on these, never on message text. */
export const ENGINE_ERROR_KINDS = [
  'fileNotFound',
  'syntaxError',
  'importError',
  'noModel',
  'ambiguousModel',
  'constructorArgs',
  'shapeMismatch',
  'deviceMismatch',
  'userCodeError',
  'userExit',
  'untrusted',
  'runtimeMissing',
  'unsupported',
  'notLoaded',
  'unknownPath',
  'unknownHook',
  'badRequest',
  'timeout',
  'engineCrashed',
  /** torch.distributed.run failed before every rank reported (a bad launcher option, a rendezvous timeout). */
  'launcherFailed',
  'cancelled',
  'internal',
] as const;

export type EngineErrorKind = (typeof ENGINE_ERROR_KINDS)[number];

export interface EngineErrorData {
  kind: EngineErrorKind;
  /** The user's file, and the line at fault when known. */
  location?: SourceLocation;
  /** Module path (`features.3`) or layer name at fault. */
  layer?: string;
  expected?: string;
  got?: string;
  /** For noModel/ambiguousModel: what the file does contain. */
  candidates?: string[];
  /** Short traceback of user frames only, innermost last. */
  userStack?: SourceLocation[];
  /** A single actionable hint. */
  hint?: string;
  /** Distributed runs: the rank whose failure ended the job. */
  rank?: number;
}

/**
 * The one code each kind is sent with, by both engines (conformance checks every error it sees
 * against this). The client makes `timeout` and `engineCrashed` itself; they never cross the wire.
 */
export const ERROR_CODE_OF_KIND: Record<EngineErrorKind, ErrorCode> = {
  fileNotFound: ErrorCodes.userError,
  syntaxError: ErrorCodes.userError,
  importError: ErrorCodes.userError,
  noModel: ErrorCodes.userError,
  ambiguousModel: ErrorCodes.userError,
  constructorArgs: ErrorCodes.userError,
  shapeMismatch: ErrorCodes.userError,
  deviceMismatch: ErrorCodes.userError,
  userCodeError: ErrorCodes.userError,
  userExit: ErrorCodes.userError,
  untrusted: ErrorCodes.environment,
  runtimeMissing: ErrorCodes.environment,
  unsupported: ErrorCodes.environment,
  notLoaded: ErrorCodes.notFound,
  unknownPath: ErrorCodes.notFound,
  unknownHook: ErrorCodes.notFound,
  badRequest: ErrorCodes.badRequest,
  timeout: ErrorCodes.internal,
  engineCrashed: ErrorCodes.internal,
  launcherFailed: ErrorCodes.userError,
  cancelled: ErrorCodes.cancelled,
  internal: ErrorCodes.internal,
};
