// `model-lens run --nproc-per-node N` / `--torchrun "OPTIONS"`: a training script run on every
// rank of a torch.distributed.run job (the engine starts the launcher and folds the ranks'
// reports into one run). What the CLI adds over a single-process run: the launch options, the
// rank on each printed line, the ranks in the progress line, and a per-rank summary.
import * as path from 'node:path';
import type {
  DistributedLaunch,
  OutputEvent,
  RankDiagnosis,
  TrainDiagnosis,
  TrainProgress,
} from '../protocol/messages';
import { formatLoss } from '../client/trainingText';

export const DISTRIBUTED_USAGE =
  '  model-lens run FILE --nproc-per-node N [--torchrun "LAUNCHER OPTIONS"] [-- ARGS...]';

export const DISTRIBUTED_HELP = `Distributed (PyTorch; every rank instrumented, one view):
  --nproc-per-node N     run FILE on N ranks through torch.distributed.run (torchrun)
  --torchrun "OPTIONS"   any other torchrun options, e.g. "--nnodes 2 --node-rank 0
                         --rdzv-backend c10d --rdzv-endpoint HOST:PORT"`;

/**
 * Ctrl-C waits this long for every rank to stop and report before the engine (and with it the
 * launcher) is shut down: a rank blocked in a collective stops only when its peers have exited.
 */
export const DISTRIBUTED_STOP_WAIT_MS = 10_000;

/** How long Ctrl-C waits for the run to stop: `single` for a one-process run. */
export function stopWaitMs(distributed: DistributedLaunch | undefined, single: number): number {
  return distributed ? DISTRIBUTED_STOP_WAIT_MS : single;
}

/** The most ranks one node may start (a typo guard, not a torch limit). */
export const MAX_NPROC_PER_NODE = 256;

export class DistributedUsageError extends Error {}

/**
 * Takes `--nproc-per-node N` and `--torchrun OPTIONS` (also in `--flag=value` form) out of the
 * arguments before `--`; returns the rest for the ordinary run parser.
 */
export function takeDistributedArgs(argv: string[]): {
  argv: string[];
  distributed?: DistributedLaunch;
} {
  const dashes = argv.indexOf('--');
  const own = dashes >= 0 ? argv.slice(0, dashes) : argv;
  const rest: string[] = [];
  let nproc: number | undefined;
  let launcherArgs: string[] | undefined;
  for (let i = 0; i < own.length; i++) {
    const arg = own[i];
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (flag !== '--nproc-per-node' && flag !== '--torchrun') {
      rest.push(arg);
      continue;
    }
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : own[++i];
    if (value === undefined) throw new DistributedUsageError(`${flag} needs a value`);
    if (flag === '--nproc-per-node') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > MAX_NPROC_PER_NODE) {
        throw new DistributedUsageError(
          `--nproc-per-node ${value}: expected a whole number from 1 to ${MAX_NPROC_PER_NODE}`,
        );
      }
      nproc = n;
    } else {
      value = value.trim();
      launcherArgs = [...(launcherArgs ?? []), ...splitShellWords(value)];
    }
  }
  if (dashes >= 0) rest.push(...argv.slice(dashes));
  if (nproc === undefined && launcherArgs === undefined) return { argv: rest };
  return { argv: rest, distributed: { nprocPerNode: nproc, launcherArgs } };
}

/** Splits `--nnodes 2 --rdzv-endpoint "host:29400"` as a POSIX shell would (quotes, `\`). */
export function splitShellWords(text: string): string[] {
  const words: string[] = [];
  let cur = '';
  let started = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      started = true;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      started = true;
    } else if (/\s/.test(c)) {
      if (started) words.push(cur);
      cur = '';
      started = false;
    } else {
      cur += c;
      started = true;
    }
  }
  if (quote)
    throw new DistributedUsageError(`--torchrun: unclosed ${quote} in ${JSON.stringify(text)}`);
  if (started) words.push(cur);
  return words;
}

/** Distributed runs are PyTorch scripts; anything else is a usage error, said before any start. */
export function checkDistributedFile(
  file: string,
  distributed: DistributedLaunch | undefined,
): void {
  if (distributed && path.extname(file) !== '.py') {
    throw new DistributedUsageError(
      `${file}: --nproc-per-node and --torchrun run PyTorch scripts (.py) only`,
    );
  }
}

/** What a rank printed, each line marked with its rank (as torchrun's `--tee` does). */
export function withRankPrefix(o: OutputEvent, atLineStart: Map<number, boolean>): string {
  if (o.rank === undefined) return o.text;
  const prefix = `[rank ${o.rank}] `;
  let out = '';
  let start = atLineStart.get(o.rank) ?? true;
  for (const part of o.text.split(/(?<=[\n\r])/)) {
    if (!part) continue;
    out += (start ? prefix : '') + part;
    start = part.endsWith('\n') || part.endsWith('\r');
  }
  atLineStart.set(o.rank, start);
  return out;
}

/** " · 2 ranks · loss spread 0.0123" for the progress line; empty for a single-process run. */
export function ranksText(p: TrainProgress): string {
  if (!p.ranks) return '';
  const n = p.worldSize ?? p.ranks.length;
  let text = ` · ${n} rank${n === 1 ? '' : 's'}`;
  const behind = p.ranks.filter((r) => r.state === 'starting').length;
  if (behind && p.state !== 'starting') text += ` (${behind} starting)`;
  if (p.lossSpread && p.ranks.length > 1)
    text += ` · loss spread ${formatLoss(p.lossSpread.max - p.lossSpread.min)}`;
  return text;
}

function ms(v: number | null | undefined): string {
  return v === null || v === undefined ? '--' : v.toFixed(2);
}

/** One line per rank: its step time and split, and where it waited in collectives. */
export function formatRankLine(r: RankDiagnosis): string {
  const where = [r.host, r.pid !== undefined ? `pid ${r.pid}` : undefined]
    .filter(Boolean)
    .join(', ');
  const who = `  rank ${r.rank}${where ? ` (${where})` : ''}`;
  let line = `${who}: ${r.state}, ${r.steps} steps, ${ms(r.stepMs)} ms/step`;
  const b = r.breakdown;
  if (b) {
    const parts = [
      `data ${ms(b.dataMs)}`,
      `forward ${ms(b.forwardMs)}`,
      `backward ${ms(b.backwardMs)}`,
      `optimizer ${ms(b.optimizerMs)}`,
      `other ${ms(b.otherMs)}`,
    ];
    line += ` (${parts.join(', ')})`;
  }
  if (r.gpu) {
    const gib = (n: number): string => (n / 2 ** 30).toFixed(2);
    const which =
      r.gpu.index !== undefined ? ` (GPU ${r.gpu.index})` : r.gpu.uuid ? ` (${r.gpu.uuid})` : '';
    const mem = `${gib(r.gpu.allocatedBytes)} GiB allocated, peak ${gib(r.gpu.peakBytes)} GiB`;
    line += `; ${r.gpu.device}${which} ${mem}`;
  }
  const top = r.collectives[0];
  if (top && r.steps >= 2) {
    const at = top.source ? ` at ${path.basename(top.source.file)}:${top.source.line}` : '';
    line += `; collectives ${ms(r.waitMsPerStep)} ms/step, most in ${top.op}${at}`;
  }
  return line;
}

/** The per-rank part of the end-of-run summary (none for a single-process run). */
export function formatRanksSummary(
  d: TrainDiagnosis | undefined,
  p: TrainProgress | undefined,
): string[] {
  if (!d?.ranks?.length) return [];
  const lines = [`Ranks: ${p?.worldSize ?? d.ranks.length}`];
  if (p?.lossSpread && d.ranks.length > 1) {
    const s = p.lossSpread;
    const range = `${formatLoss(s.min)} … ${formatLoss(s.max)}`;
    lines.push(`  loss at step ${s.step} over ranks: ${range}`);
  }
  for (const r of d.ranks) lines.push(formatRankLine(r));
  return lines;
}
