// How a child process ended, in one wording for the CLI, the extension and the system monitor.
// No environment: the caller passes what Node's `exit` event gave it.

export interface ProcessEnd {
  code: number | null;
  signal: string | null;
}

/** `was killed by SIGKILL` or `exited with code 1`, to follow the process's name. */
export function describeExit(end: ProcessEnd): string {
  return end.signal ? `was killed by ${end.signal}` : `exited with code ${end.code}`;
}
