// `model-lens run FILE`: runs a training script (PyTorch `__main__`, or a TF.js file's `train`
// export) in its engine with live progress, Ctrl-C to stop, and a summary with the diagnosis.
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EngineClient, EngineError, engineKindForFile } from '../client/engineClient';
import { ErrorCodes, type EngineErrorData } from '../protocol/errors';
import {
  outputNotification,
  trainDiagnoseRequest,
  trainDiagnosisNotification,
  trainProgressNotification,
  trainStartRequest,
  trainStopRequest,
  type TrainDiagnosis,
  type TrainProgress,
} from '../protocol/messages';
import { formatEngineError, formatLocation } from '../client/textFormat';
import { describeExit } from '../shared/processExit';
import {
  EXIT_FAILED,
  EXIT_INTERRUPTED,
  EXIT_OK,
  EXIT_USAGE,
  UsageError,
  asUsageError,
  positiveInt,
  resolveModelFile,
} from './cliArgs';
import { RunRecord } from '../client/runRecord';
import {
  epochsDone,
  formatDuration,
  formatLoss,
  formatRate,
  isFinalState,
  progressText,
} from '../client/trainingText';
import {
  DISTRIBUTED_HELP,
  DISTRIBUTED_USAGE,
  DistributedUsageError,
  checkDistributedFile,
  formatRanksSummary,
  ranksText,
  stopWaitMs,
  takeDistributedArgs,
  withRankPrefix,
} from './distributedRun';
import type { DistributedLaunch } from '../protocol/messages';
/** 128 + SIGHUP: the terminal closed. */
const RUN_EXIT_HANGUP = 129;

/** Without a TTY, one progress line at most this often (logs and CI stay readable). */
export const PLAIN_PROGRESS_INTERVAL_MS = 5_000;
/** Ctrl-C waits this long for the run to stop at a step boundary before the engine is shut down. */
export const STOP_WAIT_MS = 1_000;
/** Limit for the `train/diagnose` asked after the run ends. */
export const FINAL_DIAGNOSIS_WAIT_MS = 10_000;
const BAR_WIDTH_CHARS = 24;
const DEFAULT_TTY_COLUMNS = 100;
const DEFAULT_TTY_ROWS = 30;

export const RUN_USAGE = `  model-lens run FILE [--epochs N] [--json] [-- ARGS...]\n${DISTRIBUTED_USAGE}`;

const RUN_HELP = `Usage:
${RUN_USAGE}

Runs FILE's training in its engine: a PyTorch script as __main__ (ARGS become sys.argv[1:]),
or the \`train(model, { epochs })\` export of a TensorFlow.js file. The script runs in the
current directory, as \`python FILE\` would. Its output is shown as it prints; progress goes
to stderr. Ctrl-C stops the run (exit 130).

Options:
  --epochs N         tfjs only: override the epochs of the train export / fit. A .py script
                     reads its own arguments: pass them after -- (--epochs on a .py is an error)
  --model NAME       tfjs: the export that builds the model, when the file has several
  --json             print {runId, state, steps, epochs, loss, diagnosis} on stdout at the end
                     (the script's stdout then goes to stderr)
  --python PATH      Python interpreter for .py files
  --backend NAME     tfjs: auto|tensorflow|wasm|cpu; pytorch: auto|cpu|cuda|cuda:N|mps
  --timeout SECONDS  limit for starting the run (import and model build; default 120)

${DISTRIBUTED_HELP}

Exit codes: 0 done, 1 the run failed (the message names file and line), 2 bad usage, 130 stopped with Ctrl-C.`;

const OPTIONS = {
  epochs: { type: 'string' },
  model: { type: 'string' },
  json: { type: 'boolean', default: false },
  python: { type: 'string' },
  backend: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} satisfies ParseArgsConfig['options'];

export interface RunOptions {
  file: string;
  epochs?: number;
  model?: string;
  json: boolean;
  python?: string;
  backend?: string;
  timeoutMs?: number;
  args: string[];
  distributed?: DistributedLaunch;
}

/** Splits `run` arguments at the first `--`: before are ours, after go to the script untouched. */
export function parseRunArgs(argv: string[]): RunOptions | 'help' {
  const dashes = argv.indexOf('--');
  const own = dashes >= 0 ? argv.slice(0, dashes) : argv;
  const scriptArgs = dashes >= 0 ? argv.slice(dashes + 1) : [];
  const { values, positionals } = asUsageError(() =>
    parseArgs({ args: own, options: OPTIONS, allowPositionals: true, strict: true }),
  );
  if (values.help) return 'help';
  if (positionals.length === 0) throw new UsageError('missing FILE');
  if (positionals.length > 1)
    throw new UsageError(`unexpected argument ${positionals[1]} (script arguments go after --)`);
  if (values.epochs !== undefined && positionals[0].endsWith('.py')) {
    throw new UsageError(
      `--epochs applies to a TF.js train export; ${positionals[0]} reads its own arguments: ` +
        `pass them after --, e.g. -- --epochs ${values.epochs}`,
    );
  }
  return {
    file: positionals[0],
    epochs: values.epochs === undefined ? undefined : positiveInt('epochs', values.epochs),
    model: values.model,
    json: values.json,
    python: values.python,
    backend: values.backend,
    timeoutMs:
      values.timeout === undefined ? undefined : positiveInt('timeout', values.timeout) * 1000,
    args: scriptArgs,
  };
}

// ---- text ------------------------------------------------------------------------------------

/** One progress bar line for a terminal `columns` wide (no newline; the caller rewrites it). */
export function progressBar(p: TrainProgress, loss: number | null, columns: number): string {
  if (p.state === 'starting' && p.step === 0) return 'starting…';
  const text = progressText(p, loss) + ranksText(p);
  let bar = '';
  if (p.totalSteps) {
    const frac = Math.max(0, Math.min(1, p.step / p.totalSteps));
    const filled = Math.round(frac * BAR_WIDTH_CHARS);
    bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH_CHARS - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% `;
  }
  const line = `${bar}${text}`;
  return line.length >= columns ? line.slice(0, Math.max(0, columns - 1)) : line;
}

/** The end-of-run report: what ran, how long, the loss, the diagnosis findings. */
export function formatRunSummary(r: RunRecord): string {
  const p = r.last;
  const lines: string[] = [];
  const steps = p?.step ?? 0;
  const epochs = p ? epochsDone(p) : null;
  const d = r.diagnosis;
  const epochText = epochs !== null ? `, ${plural(epochs, 'epoch')}` : '';
  // The CLI's clock covers the engine's start and the script's imports; per-step figures come
  // from the engine's clock (the Diagnosis line), so say which is which.
  let rate = '';
  if (!d && p?.stepsPerSec) rate = ` (${formatRate(p.stepsPerSec)})`;
  lines.push(
    `Training ${r.state}: ${plural(steps, 'step')}${epochText} in ${formatDuration(r.seconds)} wall, start-up included${rate}`,
  );
  if (r.loss.length) {
    let min = r.loss[0];
    for (const pt of r.loss) if (pt[1] < min[1]) min = pt;
    lines.push(
      `Loss: ${formatLoss(r.loss[0][1])} at step ${r.loss[0][0]} → ${formatLoss(r.finalLoss)} at step ${r.loss[r.loss.length - 1][0]} (lowest ${formatLoss(min[1])} at step ${min[0]})`,
    );
  } else {
    lines.push('Loss: none reported');
  }
  const mode = modeText(p);
  if (mode) lines.push(`Model as last seen: ${mode}`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  if (d) {
    const facts = [`${d.steps} steps on ${d.device}`];
    if (d.steps >= 2 && d.stepMs > 0) {
      facts.push(
        `${d.stepMs.toFixed(2)} ms/step (${formatRate(1000 / d.stepMs)}), wall clock, mean of steps 2–${d.steps} (step 1 is warm-up)`,
      );
    } else if (d.stepMs > 0) {
      facts.push(`${d.stepMs.toFixed(2)} ms for its one step, start-up included`);
    }
    if (d.batchSize !== null) facts.push(`batch ${d.batchSize}`);
    lines.push(`Diagnosis: ${facts.join(', ')}`);
    if (d.breakdown) {
      const b = d.breakdown;
      lines.push(
        `  per step: data ${b.dataMs.toFixed(2)} ms, forward ${b.forwardMs.toFixed(2)} ms, backward ${b.backwardMs.toFixed(2)} ms, optimizer ${b.optimizerMs.toFixed(2)} ms, other ${b.otherMs.toFixed(2)} ms`,
      );
    }
    lines.push(...formatRanksSummary(d, p));
    if (!d.findings.length) lines.push('  no findings');
    for (const f of d.findings)
      lines.push(
        `  ${f.severity}: ${f.message}${f.source && !f.message.includes(`:${f.source.line}`) ? ` (${formatLocation(f.source)})` : ''}`,
      );
  }
  return lines.join('\n');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** "eval mode, grad off, lr 0.1": what the engine saw last (parts it knows). */
export function modeText(p: TrainProgress | undefined): string {
  if (!p) return '';
  const parts: string[] = [];
  if (p.training !== undefined) parts.push(p.training ? 'train mode' : 'eval mode');
  if (p.gradEnabled !== undefined) parts.push(p.gradEnabled ? 'grad on' : 'grad off');
  if (p.lr !== undefined && p.lr !== null) parts.push(`lr ${p.lr}`);
  return parts.join(', ');
}

// ---- the command -----------------------------------------------------------------------------

/**
 * Progress on stderr: a bar rewritten in place on a terminal, a line every few seconds otherwise.
 * Never erases a line the script wrote: while the script's last output on the terminal has no
 * line end yet (its own tqdm bar, redrawn with \r), our bar stays hidden.
 */
class ProgressDisplay {
  private shown = false;
  private lastPlainAt = 0;
  private lastLine = '';
  /** The script's last output to the terminal did not end its line. */
  private scriptLineOpen = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  private get tty(): boolean {
    return Boolean(this.stream.isTTY);
  }

  update(p: TrainProgress, loss: number | null): void {
    if (this.tty) {
      this.lastLine = progressBar(p, loss, this.stream.columns || DEFAULT_TTY_COLUMNS);
      if (this.scriptLineOpen) return;
      this.stream.write(`\r\x1b[2K${this.lastLine}`);
      this.shown = true;
    } else if (
      p.state === 'running' &&
      Date.now() - this.lastPlainAt >= PLAIN_PROGRESS_INTERVAL_MS
    ) {
      this.lastPlainAt = Date.now();
      this.stream.write(`progress: ${progressText(p, loss)}${ranksText(p)}\n`);
    }
  }

  /** Writes text the script printed: our bar (our own line) goes first, and comes back after
   * the script's text only once the script has ended its line. */
  passThrough(target: NodeJS.WriteStream, text: string): void {
    if (this.shown && this.tty) this.stream.write('\r\x1b[2K');
    this.shown = false;
    target.write(text);
    if (!this.tty || !text) return;
    this.scriptLineOpen = !text.endsWith('\n');
    if (!this.scriptLineOpen && this.lastLine) {
      this.stream.write(this.lastLine);
      this.shown = true;
    }
  }

  clear(): void {
    if (this.shown && this.tty) this.stream.write('\r\x1b[2K');
    this.shown = false;
  }
}

/**
 * What the engine tells a script about the terminal the CLI runs in: its size (COLUMNS, LINES,
 * which shutil.get_terminal_size and tqdm read) and that its output is a terminal, so progress
 * bars draw at full width. Nothing when the output is not a terminal or is --json's document.
 */
export function terminalEnv(
  out: { isTTY?: boolean; columns?: number; rows?: number },
  json: boolean,
): Record<string, string> {
  if (json || !out.isTTY) return {};
  return {
    COLUMNS: String(out.columns || DEFAULT_TTY_COLUMNS),
    LINES: String(out.rows || DEFAULT_TTY_ROWS),
    MODEL_LENS_TERMINAL: '1',
  };
}

/** Entry from main.ts: `argv` is everything after `run`. Returns the exit code. */
export async function runCommand(argv: string[], clientVersion: string): Promise<number> {
  let opts: RunOptions | 'help';
  try {
    const taken = takeDistributedArgs(argv);
    opts = parseRunArgs(taken.argv);
    if (opts !== 'help') {
      checkDistributedFile(opts.file, taken.distributed);
      opts.distributed = taken.distributed;
    }
  } catch (err) {
    if (!(err instanceof UsageError) && !(err instanceof DistributedUsageError)) throw err;
    process.stderr.write(`model-lens run: ${err.message}\n\n${RUN_HELP}\n`);
    return EXIT_USAGE;
  }
  if (opts === 'help') {
    process.stdout.write(`${RUN_HELP}\n`);
    return EXIT_OK;
  }
  try {
    const code = await runTraining(resolveModelFile(opts.file), opts, clientVersion);
    // Ctrl-C means now: the engine is already shut down and everything is written (stdout and
    // stderr are synchronous on Linux), but the client's kill-grace timer would keep the
    // process alive for another 1.5 s.
    if (code === EXIT_INTERRUPTED) process.exit(code);
    return code;
  } catch (err) {
    if (err instanceof EngineError) {
      process.stderr.write(formatEngineError(err.message, err.data) + '\n');
      return EXIT_FAILED;
    }
    throw err;
  }
}

async function runTraining(file: string, opts: RunOptions, clientVersion: string): Promise<number> {
  const record = new RunRecord();
  const display = new ProgressDisplay(process.stderr);
  // With --json, stdout carries only the final document.
  const userStdout = opts.json ? process.stderr : process.stdout;
  let interrupted = false;
  let client: EngineClient | undefined;
  let settle: (() => void) | undefined;
  const ended = new Promise<void>((resolve) => (settle = resolve));
  let diagnosisFinal = false;
  const rankLineStart = new Map<number, boolean>();

  // Signals are handled from the start: Ctrl-C during `import torch` must not orphan the engine.
  const onSignal = (): void => {
    if (interrupted) {
      // A second Ctrl-C: stop waiting for a clean stop.
      void client?.kill('disposed').finally(() => process.exit(EXIT_INTERRUPTED));
      return;
    }
    interrupted = true;
    display.clear();
    process.stderr.write('Stopping the run (Ctrl-C again to kill it)…\n');
    settle?.();
  };
  // The terminal is gone (SIGHUP): nobody can watch a clean stop, so the engine group is ended.
  const onHangup = (): void => {
    void (client?.kill('disposed') ?? Promise.resolve()).finally(() =>
      process.exit(RUN_EXIT_HANGUP),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onHangup);
  try {
    client = await EngineClient.start({
      kind: engineKindForFile(file),
      // The caller's directory, as `python FILE` would: relative paths in the script (a saved
      // model.pth, a data folder) mean what its user expects.
      cwd: process.cwd(),
      env: terminalEnv(process.stdout, opts.json),
      python: opts.python,
      backend: opts.backend,
      // The CLI runs what its user points it at, like `python train.py` would.
      trusted: true,
      clientName: 'model-lens-cli',
      clientVersion,
    });
    if (interrupted) return await finish(client, record, opts, EXIT_INTERRUPTED);
    for (const note of client.notes) process.stderr.write(`warning: ${note}\n`);
    const engine = client;

    client.onNotification(outputNotification, (o) => {
      if (o.runId && record.runId && o.runId !== record.runId) return;
      display.passThrough(
        o.stream === 'stderr' ? process.stderr : userStdout,
        withRankPrefix(o, rankLineStart),
      );
    });
    client.onNotification(trainProgressNotification, (p) => {
      // Notifications can arrive before train/start's response names the run.
      record.add(p);
      if (isFinalState(p.state)) {
        display.clear();
        settle?.();
      } else if (!interrupted) {
        display.update(p, record.finalLoss);
      }
    });
    client.onNotification(trainDiagnosisNotification, (d) => {
      record.setDiagnosis(d);
      if (isFinalState(record.state)) diagnosisFinal = true;
    });
    const engineGone = new Promise<never>((_, reject) =>
      engine.onExit((e) => {
        const how = describeExit(e);
        const tail = e.stderrTail.trim().split('\n').slice(-12).join('\n');
        reject(
          new EngineError(
            `The ${engine.kind} engine ${how} during the run.${tail ? `\nLast engine output:\n${tail}` : ''}`,
            ErrorCodes.internal,
            {
              kind: 'engineCrashed',
            },
          ),
        );
      }),
    );
    engineGone.catch(() => undefined);

    const start = client.request(
      trainStartRequest,
      {
        file,
        model: opts.model,
        args: opts.args,
        epochs: opts.epochs,
        distributed: opts.distributed,
      },
      { timeoutMs: opts.timeoutMs },
    );
    const raced = await Promise.race([start, ended.then(() => null)]);
    if (raced === null && interrupted) {
      // Ctrl-C while the script was still importing: the run gets its id when train/start answers.
      const late = await Promise.race([
        start.catch(() => null),
        delay(STOP_WAIT_MS).then(() => null),
      ]);
      if (late) {
        record.runId = late.runId;
        await stopRun(engine, late.runId, stopWaitMs(opts.distributed, STOP_WAIT_MS));
      }
      return await finish(engine, record, opts, EXIT_INTERRUPTED);
    }
    // A run that fails at once can report its end before train/start's response arrives.
    const started = raced ?? (await start);
    record.runId = started.runId;

    await Promise.race([ended, engineGone]);
    if (interrupted && !isFinalState(record.state)) {
      await stopRun(engine, started.runId, stopWaitMs(opts.distributed, STOP_WAIT_MS));
      return await finish(engine, record, opts, EXIT_INTERRUPTED);
    }
    // The engine sends a last diagnosis when the run ends; ask for it when it has not come yet.
    if (!diagnosisFinal)
      record.diagnosis = (await diagnose(engine, started.runId)) ?? record.diagnosis;
    const code = record.state === 'done' ? EXIT_OK : EXIT_FAILED;
    return await finish(engine, record, opts, interrupted ? EXIT_INTERRUPTED : code);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onHangup);
    display.clear();
    await client?.dispose();
  }
}

async function stopRun(client: EngineClient, runId: string, waitMs = STOP_WAIT_MS): Promise<void> {
  try {
    await Promise.race([client.request(trainStopRequest, { runId }), delay(waitMs)]);
  } catch {
    // The engine is shut down right after; a failed stop changes nothing for the user.
  }
}

/** `train/diagnose` where the engine has it; engines without it (TF.js) answer MethodNotFound. */
async function diagnose(client: EngineClient, runId: string): Promise<TrainDiagnosis | undefined> {
  if (!client.alive) return undefined;
  try {
    return await client.request(
      trainDiagnoseRequest,
      { runId },
      { timeoutMs: FINAL_DIAGNOSIS_WAIT_MS },
    );
  } catch {
    return undefined;
  }
}

/** Prints the outcome and shuts the engine down before the exit code is returned. */
async function finish(
  client: EngineClient,
  record: RunRecord,
  opts: RunOptions,
  code: number,
): Promise<number> {
  await client.dispose();
  const error = record.last?.error;
  if (record.state === 'failed' && error)
    process.stderr.write(formatEngineError(error.message, errorData(error)) + '\n');
  if (opts.json) process.stdout.write(compactPairs(JSON.stringify(record.json(), null, 2)) + '\n');
  else if (record.runId) process.stdout.write(formatRunSummary(record) + '\n');
  return code;
}

function errorData(e: EngineErrorData & { message: string }): EngineErrorData {
  const { message: _message, ...data } = e;
  return data;
}

/** `[step, value]` pairs on one line each: a long curve stays readable in an indented document. */
export function compactPairs(json: string): string {
  return json.replace(
    /\[\n\s*(-?[\d.eE+-]+|null),\n\s*(-?[\d.eE+-]+|null|"-?Infinity"|"NaN")\n\s*\]/g,
    '[$1, $2]',
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
