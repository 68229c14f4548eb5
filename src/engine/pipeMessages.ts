// Messages between the TF.js engine's main thread and its pipe worker (pipeWorker.ts).

export interface PipeWorkerData {
  /** The protocol socket's fd (the client passes it as fd 3). */
  fd: number;
  /** The client's pid; the engine ends when its parent is someone else. 0: not watched. */
  parentPid: number;
  memoryLimitMB: number;
  /** Whether the engine leads its own process group (EngineClient starts it that way). */
  ownGroup: boolean;
  /** SharedArrayBuffer of Int32 counters the worker publishes (see PIPE_QUEUED_BYTES_INDEX). */
  counters: SharedArrayBuffer;
}

/** Bytes written to the socket that the client has not read yet. */
export const PIPE_QUEUED_BYTES_INDEX = 0;
export const PIPE_COUNTERS = 1;

export type ToWorker =
  { type: 'write'; data: Uint8Array } | { type: 'doing'; text: string } | { type: 'flush' };

export type ToMain = { type: 'data'; data: Uint8Array } | { type: 'closed' } | { type: 'flushed' };
