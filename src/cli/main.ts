import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EngineClient, EngineError, engineKindForFile } from '../client/engineClient';
import { packageRoot } from '../client/packageRoot';
import {
  modelLoadRequest,
  modelSummaryRequest,
  modelTreeRequest,
  outputNotification,
  profileRunRequest,
  type ModelLoadResult,
  type ModelTreeResult,
  type SummaryResult,
} from '../protocol/messages';
import type { InputRequest, TensorInfo } from '../protocol/types';
import {
  formatEngineError,
  formatProfile,
  formatSummary,
  formatTensorFacts,
} from '../client/textFormat';
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
import { inputProblem, parseInput } from './inputCheck';
import { RUN_USAGE, runCommand } from './runCommand';
import { systemCommand } from './systemCommand';
/** 128 + the signal number, as a shell reports a program a signal ended. */
const SIGNAL_EXIT_CODES: Partial<Record<NodeJS.Signals, number>> = {
  SIGHUP: 129,
  SIGINT: EXIT_INTERRUPTED,
  SIGTERM: 143,
};
/** After a signal, the engine gets this long to shut down before the CLI exits anyway. */
const SIGNAL_EXIT_MAX_MS = 3_000;

const DEFAULT_PROFILE_STEPS = 10;
const PROFILE_TOP_OPS = 25;

const USAGE = `Usage:
  model-lens inspect FILE [--model NAME] [--input INPUT]... [--device meta] [--tensors] [--json]
  model-lens profile FILE [--model NAME] [--input INPUT]... [--steps N] [--mode forward|train] [--trace OUT.json] [--json]
${RUN_USAGE}
  model-lens system [--python PATH] [--json]

FILE is a PyTorch model file (.py) or a TensorFlow.js model file (.js, .mjs, .ts, model.json).
INPUT is [NAME=]SHAPE[:DTYPE]: SHAPE comma- or x-separated, e.g. --input 1,3,224,224; DTYPE
float32 (default; int64 for a model whose first layer is an Embedding), int64, float16, bool...;
NAME passes it as that keyword argument of forward(). Repeat --input for several inputs, e.g.
--input input_ids=1,128:int64 --input attention_mask=1,128:int64.

Options:
  --model NAME       class, instance or export to use when the file defines several
  --input INPUT      an input (default: the file's example input, else inferred)
  --device meta      inspect: build the model on torch's meta device (torch 2.x): shapes, params
                     and mult-adds with no weight memory (automatic when the weights do not fit)
  --json             machine-readable output on stdout
  --tensors          inspect: each output's stride, offset, contiguity and why, shared storage,
                     and whether view() fails
  --python PATH      Python interpreter for .py files and system (default: first of python3,
                     /usr/bin/python3, python that can import torch)
  --backend NAME     tfjs: auto|tensorflow|wasm|cpu; pytorch: auto|cpu|cuda|cuda:N|mps
  --timeout SECONDS  per-request limit (default 120)
  --memory-limit MB  engine memory ceiling (default 75% of this machine's memory; 0: none)
  --steps N          profile: timed steps (default ${DEFAULT_PROFILE_STEPS})
  --trace OUT.json   profile: write a Chrome trace that Perfetto opens

Exit codes: 0 ok, 1 the model failed (the message names file, line, layer), 2 bad usage.`;

const OPTIONS = {
  model: { type: 'string' },
  input: { type: 'string', multiple: true },
  device: { type: 'string' },
  json: { type: 'boolean', default: false },
  tensors: { type: 'boolean', default: false },
  python: { type: 'string' },
  backend: { type: 'string' },
  timeout: { type: 'string' },
  'memory-limit': { type: 'string' },
  steps: { type: 'string' },
  mode: { type: 'string' },
  trace: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
  version: { type: 'boolean', default: false },
} satisfies ParseArgsConfig['options'];

interface Options {
  model?: string;
  input?: string[];
  device?: string;
  json: boolean;
  tensors?: boolean;
  python?: string;
  backend?: string;
  timeout?: string;
  'memory-limit'?: string;
  steps?: string;
  mode?: string;
  trace?: string;
}

/** Load params for --input flags: plain shapes for every engine, `inputs` when a dtype or name is given. */
export function inputParams(flags: string[] | undefined): {
  inputShapes?: number[][];
  inputs?: InputRequest[];
} {
  if (!flags?.length) return {};
  const inputs = flags.map(parseInput);
  const plain = inputs.every((i) => i.dtype === undefined && i.name === undefined);
  return plain
    ? { inputShapes: inputs.map((i) => i.shape) }
    : { inputShapes: inputs.map((i) => i.shape), inputs };
}

function deviceParam(device: string | undefined): { device?: 'meta' } {
  if (device === undefined) return {};
  if (device !== 'meta')
    throw new UsageError(
      `--device ${device}: the one device option is meta (use --backend for cpu/cuda)`,
    );
  return { device: 'meta' };
}

/**
 * Ctrl-C, kill, or the terminal closing (SIGHUP) stop the engine (and its process group) and
 * exit with 128 + the signal number; a stuck shutdown does not keep the CLI alive.
 */
export function exitOnSignals(client: EngineClient): () => void {
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const [signal, code] of Object.entries(SIGNAL_EXIT_CODES) as [NodeJS.Signals, number][]) {
    const handler = (): void => {
      setTimeout(() => process.exit(code), SIGNAL_EXIT_MAX_MS).unref();
      void client.dispose().finally(() => process.exit(code));
    };
    handlers.set(signal, handler);
    process.once(signal, handler);
  }
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}

/** --memory-limit in MB: undefined for the default, 0 for none. */
function memoryLimitMB(opts: Options): number | undefined {
  const text = opts['memory-limit'];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(
      `--memory-limit ${text}: expected megabytes, a whole number (0: no limit)`,
    );
  return n;
}

/** What can be checked without an engine: inputs, limits. Starting an engine takes seconds. */
function checkBeforeStart(opts: Options): void {
  const problem = inputProblem(opts.input, memoryLimitMB(opts));
  if (problem) throw new UsageError(problem);
  requestTimeout(opts);
}

async function withEngine<T>(
  file: string,
  opts: Options,
  fn: (c: EngineClient) => Promise<T>,
): Promise<T> {
  checkBeforeStart(opts);
  const client = await EngineClient.start({
    kind: engineKindForFile(file),
    cwd: path.dirname(file),
    python: opts.python,
    backend: opts.backend,
    // The CLI runs what its user points it at, like `python file.py` would.
    trusted: true,
    clientName: 'model-lens-cli',
    clientVersion: cliVersion(),
    // What the engine or user code writes to fd 1/2 directly (warnings, native libraries).
    onOutput: (text) => process.stderr.write(text),
    memoryLimitMB: memoryLimitMB(opts),
  });
  for (const note of client.notes) process.stderr.write(`warning: ${note}\n`);
  const release = exitOnSignals(client);
  // User prints go to stderr so that --json output stays parseable.
  client.onNotification(outputNotification, (o) => process.stderr.write(o.text));
  try {
    return await fn(client);
  } finally {
    release();
    await client.dispose();
  }
}

function requestTimeout(opts: Options): number | undefined {
  return opts.timeout === undefined ? undefined : positiveInt('timeout', opts.timeout) * 1000;
}

async function load(client: EngineClient, file: string, opts: Options): Promise<ModelLoadResult> {
  const loaded = await client.request(
    modelLoadRequest,
    { file, model: opts.model, ...inputParams(opts.input), ...deviceParam(opts.device) },
    { timeoutMs: requestTimeout(opts) },
  );
  if (!opts.json) {
    // Each inferred input is said once, with the CLI's flag: the engine's own warning about it
    // (which names the protocol's `inputShapes`) is the same fact.
    const inferred = loaded.inputs.filter((i) => i.source === 'inferred');
    for (const input of inferred) {
      process.stderr.write(
        `note: input shape [${input.shape.join(', ')}] was inferred${input.note ? `: ${input.note}` : ''}; pass --input to choose one\n`,
      );
    }
    const sameFact = (w: string): boolean =>
      inferred.some((i) => w.startsWith(`Input shape [${i.shape.join(', ')}] was `));
    for (const w of loaded.warnings) if (!sameFact(w)) process.stderr.write(`warning: ${w}\n`);
  }
  return loaded;
}

function outputFacts(t: TensorInfo | undefined): Partial<TensorInfo> | null {
  if (!t) return null;
  return {
    shape: t.shape,
    stride: t.stride,
    storageOffset: t.storageOffset,
    contiguous: t.contiguous,
    dtype: t.dtype,
    device: t.device,
  };
}

/** The `inspect --json` document: modules in named_modules order with their summary rows. */
export function inspectJson(
  client: EngineClient,
  loaded: ModelLoadResult,
  tree: ModelTreeResult,
  summary: SummaryResult,
) {
  const rows = new Map(summary.rows.map((r) => [r.path, r]));
  return {
    engine: client.info.kind,
    backend: client.info.backend,
    model: {
      name: loaded.name,
      type: loaded.type,
      file: loaded.file,
      inputs: loaded.inputs,
      ...(loaded.meta ? { meta: true } : {}),
    },
    modules: tree.modules.map((m) => {
      const row = rows.get(m.path);
      return {
        path: m.path,
        type: m.type,
        depth: m.depth,
        params: m.totalParams,
        ownParams: m.ownParams,
        trainableParams: m.trainableParams,
        outputShape: row?.outputShape ?? null,
        output: outputFacts(row?.output),
        aliases: m.aliases,
        macs: row?.macs ?? 0,
        ...(row?.executedMacs !== undefined ? { executedMacs: row.executedMacs } : {}),
        ...(row?.outputType ? { outputType: row.outputType } : {}),
        training: m.training,
        ran: row?.ran ?? false,
        ...(row?.note ? { note: row.note } : {}),
        ...(m.source ? { source: m.source } : {}),
      };
    }),
    parameters: tree.parameters,
    buffers: tree.buffers,
    totals: summary.totals,
    warnings: [...loaded.warnings, ...summary.warnings],
  };
}

async function inspectCommand(file: string, opts: Options): Promise<void> {
  await withEngine(file, opts, async (client) => {
    const loaded = await load(client, file, opts);
    const timeoutMs = requestTimeout(opts);
    const tree = await client.request(modelTreeRequest, { modelId: loaded.modelId }, { timeoutMs });
    const summary = await client.request(
      modelSummaryRequest,
      { modelId: loaded.modelId },
      { timeoutMs },
    );
    if (opts.json) {
      process.stdout.write(
        JSON.stringify(inspectJson(client, loaded, tree, summary), null, 2) + '\n',
      );
    } else {
      process.stdout.write(formatSummary(loaded.name, tree, summary) + '\n');
      if (opts.tensors) process.stdout.write(formatTensorFacts(summary) + '\n');
      // The summary repeats the load's warnings; those were printed already.
      for (const w of summary.warnings)
        if (!loaded.warnings.includes(w)) process.stderr.write(`warning: ${w}\n`);
    }
  });
}

async function profileCommand(file: string, opts: Options): Promise<void> {
  const steps = opts.steps === undefined ? DEFAULT_PROFILE_STEPS : positiveInt('steps', opts.steps);
  if (opts.mode && opts.mode !== 'forward' && opts.mode !== 'train') {
    throw new UsageError(`--mode ${opts.mode}: expected forward or train`);
  }
  const traceFile = opts.trace ? path.resolve(opts.trace) : undefined;
  await withEngine(file, opts, async (client) => {
    const loaded = await load(client, file, opts);
    const result = await client.request(
      profileRunRequest,
      {
        modelId: loaded.modelId,
        steps,
        mode: opts.mode as 'forward' | 'train' | undefined,
        traceFile,
      },
      { timeoutMs: requestTimeout(opts) },
    );
    if (opts.json) {
      process.stdout.write(
        JSON.stringify(
          {
            engine: client.info.kind,
            backend: client.info.backend,
            model: { name: loaded.name, type: loaded.type, file: loaded.file },
            ops: result.ops,
            modules: result.modules,
            stepMs: result.stepMs,
            steps: result.steps,
            method: result.method,
            ...(result.traceFile ? { traceFile: result.traceFile } : {}),
            warnings: result.warnings,
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      process.stdout.write(formatProfile(result, PROFILE_TOP_OPS) + '\n');
    }
  });
}

function cliVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version;
  } catch {
    return '0';
  }
}

export async function main(argv: string[]): Promise<number> {
  // `run` has options of its own and passes everything after `--` to the script.
  if (argv[0] === 'run') return runCommand(argv.slice(1), cliVersion());
  let parsed;
  try {
    parsed = asUsageError(() =>
      parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true }),
    );
  } catch (err) {
    process.stderr.write(`model-lens: ${(err as Error).message}\n\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${cliVersion()}\n`);
    return EXIT_OK;
  }
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    (values.help ? process.stdout : process.stderr).write(`${USAGE}\n`);
    return values.help ? EXIT_OK : EXIT_USAGE;
  }
  const opts = values as Options;
  try {
    if (rest.length > 1) throw new UsageError(`unexpected argument ${rest[1]}`);
    switch (command) {
      case 'inspect':
        await inspectCommand(resolveModelFile(rest[0]), opts);
        return EXIT_OK;
      case 'profile':
        await profileCommand(resolveModelFile(rest[0]), opts);
        return EXIT_OK;
      case 'system':
        await systemCommand({ json: opts.json, python: opts.python });
        return EXIT_OK;
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`model-lens: ${err.message}\n\n${USAGE}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof EngineError) {
      process.stderr.write(formatEngineError(err.message, err.data) + '\n');
      return EXIT_FAILED;
    }
    process.stderr.write(`model-lens: internal error: ${(err as Error).stack ?? err}\n`);
    return EXIT_FAILED;
  }
}

/** Entry for bin/model-lens.js: runs the CLI on process.argv and sets the exit code. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`model-lens: ${err}\n`);
      process.exitCode = EXIT_FAILED;
    },
  );
}

if (require.main === module) run();
