// The CLI's one argument front end: exit codes, usage errors, flag values and the model file,
// shared by `inspect`/`profile`/`system` (main.ts) and `run` (runCommand.ts), so the same mistake
// gets the same message and the same exit code whichever command it is made in.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../client/engineClient';
import { ErrorCodes } from '../protocol/errors';

/** Exit codes promised in the README, the same for every command. */
export const EXIT_OK = 0;
/** The model, the run or the engine failed; the message names file, line, layer. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, what a shell reports for a program stopped with Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** Bad command line: printed with the usage text, exit EXIT_USAGE. */
export class UsageError extends Error {}

/** Runs node:util's parseArgs (or any parse step) with its errors turned into UsageErrors. */
export function asUsageError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `--flag N` as a positive integer. */
export function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0)
    throw new UsageError(`--${flag} ${text}: expected a positive integer`);
  return n;
}

/**
 * The FILE argument as an absolute path. A missing argument is a usage error; a named file that
 * is not there is the model's failure (EXIT_FAILED), reported like any engine's fileNotFound.
 */
export function resolveModelFile(file: string | undefined): string {
  if (!file) throw new UsageError('missing FILE');
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) {
    throw new EngineError(`${file}: no such file`, ErrorCodes.userError, {
      kind: 'fileNotFound',
      location: { file: abs, line: 1 },
    });
  }
  return abs;
}
