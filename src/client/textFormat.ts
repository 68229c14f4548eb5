// Plain-text rendering shared by the CLI and the extension: a torchinfo-style summary, op tables
// and error messages. Pure functions over protocol types.
import type { EngineErrorData } from '../protocol/errors';
import type { ModelTreeResult, ProfileResult, SummaryResult } from '../protocol/messages';
import type { SourceLocation } from '../protocol/types';
import { formatCount, formatShape } from '../shared/format';

const WIDE_RULE_CHARS = 96;
const MAX_LISTED_BUFFERS = 12;

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(2);
}

const LISTED_UNCOUNTED_OPS = 6;

/** Scales mult-adds the way torchinfo does: the largest unit that keeps the figure ≥ 1. */
export function formatMacs(macs: number, label = 'Total mult-adds'): string {
  if (macs >= 1e12) return `${label} (T): ${(macs / 1e12).toFixed(2)}`;
  if (macs >= 1e9) return `${label} (G): ${(macs / 1e9).toFixed(2)}`;
  return `${label} (M): ${(macs / 1e6).toFixed(2)}`;
}

/** The executed count under its own name, below torchinfo's, with the ops it could not price. */
function executedLines(t: SummaryResult['totals']): string[] {
  if (t.executedMacs === undefined) return [];
  const lines = [
    `${formatMacs(t.executedMacs, 'Executed mult-adds')}  (aten ops that ran, ${t.executedMacsMethod ?? 'own formulas'})`,
  ];
  const ops = t.uncountedOps ?? [];
  if (ops.length) {
    const listed = ops.slice(0, LISTED_UNCOUNTED_OPS).map((o) => `${o.name} ×${o.calls}`);
    if (ops.length > LISTED_UNCOUNTED_OPS) listed.push(`${ops.length - LISTED_UNCOUNTED_OPS} more`);
    lines.push(`  not counted (no formula): ${listed.join(', ')}`);
  }
  return lines;
}

function pad(s: string, width: number): string {
  return s.length >= width ? s + ' ' : s + ' '.repeat(width - s.length);
}

/**
 * torchinfo's layout: the tree drawn with box characters, `Type: depth-index` names, then
 * output shape and parameter count; totals and size estimates below.
 */
export function formatSummary(
  modelName: string,
  tree: ModelTreeResult,
  summary: SummaryResult,
): string {
  const rule = '='.repeat(WIDE_RULE_CHARS);
  const thin = '-'.repeat(WIDE_RULE_CHARS);
  const rowsByPath = new Map(summary.rows.map((r) => [r.path, r]));
  const named: [string, string, string][] = [];

  const modules = new Map(tree.modules.map((m) => [m.path, m]));
  const walk = (path: string, depth: number, index: number): void => {
    const node = modules.get(path);
    if (!node) return;
    const row = rowsByPath.get(path);
    const prefix = depth === 0 ? '' : '│    '.repeat(depth - 1) + (depth === 1 ? '├─' : '└─');
    // torchinfo's `var_names` row setting: the attribute name next to the type, so the table
    // can be matched to the code and to the module paths elsewhere in Model Lens.
    const rootName = node.type === modelName ? node.type : `${node.type} (${modelName})`;
    const name = depth === 0 ? rootName : `${prefix}${node.type} (${node.name}): ${depth}-${index}`;
    // Like torchinfo: leaves show their parameters; containers show only what they own directly.
    const shown = node.isLeaf ? (row?.params ?? node.totalParams) : node.ownParams;
    const notes: string[] = [];
    if (node.aliases.length) notes.push(`shared: also ${node.aliases.join(', ')}`);
    if (node.frozen && node.totalParams > 0) notes.push('frozen');
    if (!node.training) notes.push('eval');
    if (row && !row.ran && row.note) notes.push(row.note);
    if (row?.calls !== undefined && row.calls > 1) notes.push(`called ${row.calls}×, last shape`);
    if (row?.storedParams !== undefined)
      notes.push(`pruned: ${formatCount(row.storedParams)} stored`);
    if (node.packedParams) notes.push(`${formatCount(node.packedParams)} packed quantized weights`);
    if (row?.outputType) notes.push(`output: ${row.outputType}`);
    if (depth === 0 && node.wrapper) notes.push(`wrapped by ${node.wrapper}`);
    named.push([
      name,
      formatShape(row?.outputShape ?? null),
      (shown > 0 ? formatCount(shown) : '--') + (notes.length ? `  (${notes.join('; ')})` : ''),
    ]);
    node.children.forEach((child, i) => walk(child, depth + 1, i + 1));
  };
  walk('', 0, 1);
  // Issue #10: the layout facts were only in --json; a non-contiguous output is worth a line.
  const layout = summary.rows
    .filter((r) => r.output && !r.output.contiguous && !r.output.strideSynthetic)
    .map(
      (r) =>
        `  ${r.path || '(root)'}: stride (${r.output!.stride.join(', ')}): ${r.output!.contiguity.reason}`,
    );
  const nameWidth = Math.max(40, ...named.map(([n]) => n.length + 2));
  const shapeWidth = Math.max(26, ...named.map(([, s]) => s.length + 2));
  const lines: string[] = [
    rule,
    pad('Layer (type (var_name):depth-idx)', nameWidth) +
      pad('Output Shape', shapeWidth) +
      'Param #',
    rule,
  ];
  for (const [n, s, p] of named) lines.push(pad(n, nameWidth) + pad(s, shapeWidth) + p);
  if (layout.length)
    lines.push(
      thin,
      'Non-contiguous outputs (a later .view() on them fails; .contiguous() copies):',
      ...layout,
    );

  const t = summary.totals;
  lines.push(
    rule,
    `Total params: ${formatCount(t.params)}`,
    ...(t.storedParams !== undefined
      ? [`Stored params (pruned weights before their masks): ${formatCount(t.storedParams)}`]
      : []),
    `Trainable params: ${formatCount(t.trainableParams)}`,
    `Non-trainable params: ${formatCount(t.nonTrainableParams)}`,
    ...(t.frameworkCounts ? [`(${t.frameworkCounts.note})`] : []),
    formatMacs(t.macs),
    ...executedLines(t),
    rule,
    `Input size (MB): ${mb(t.inputBytes)}`,
    `Forward/backward pass size (MB): ${mb(t.forwardBackwardBytes)}`,
    `Params size (MB): ${mb(t.paramBytes)}`,
    `Estimated Total Size (MB): ${mb(t.totalBytes)}`,
    ...(t.leafOutputBytes !== undefined
      ? [`All leaf layers' outputs (MB): ${mb(t.leafOutputBytes)}`]
      : []),
    rule,
  );
  if (tree.buffers.length > MAX_LISTED_BUFFERS) {
    // A resnet has a hundred BatchNorm statistics; their kinds and total size say enough here
    // (`--json` and the editor list them all).
    const kinds = new Map<string, number>();
    for (const b of tree.buffers) {
      const short = b.name.slice(b.name.lastIndexOf('.') + 1);
      kinds.set(short, (kinds.get(short) ?? 0) + 1);
    }
    const bytes = tree.buffers.reduce((sum, b) => sum + b.tensor.bytes, 0);
    lines.push(
      `Buffers: ${tree.buffers.length} (${[...kinds].map(([k, n]) => `${n}× ${k}`).join(', ')}), ${mb(bytes)} MB`,
      thin,
    );
  } else if (tree.buffers.length) {
    lines.push('Buffers:');
    const width = Math.max(40, ...tree.buffers.map((b) => b.name.length + 2));
    for (const b of tree.buffers)
      lines.push(`  ${pad(b.name, width)}${pad(formatShape(b.tensor.shape), 20)}${b.tensor.dtype}`);
    lines.push(thin);
  }
  return lines.join('\n');
}

/**
 * `inspect --tensors`: each module output's layout facts, as torch reports them: shape, stride,
 * storage offset, contiguity and why, the storage it shares, whether `view(-1)` fails.
 */
export function formatTensorFacts(summary: SummaryResult): string {
  const lines = ['Output tensors (stride in elements; view = t.view(-1)):'];
  for (const r of summary.rows) {
    const t = r.output;
    if (!t) continue;
    const facts = [
      `shape (${t.shape.join(', ')})`,
      `stride (${t.stride.join(', ')})${t.strideSynthetic ? ' row-major by construction' : ''}`,
      `offset ${t.storageOffset}`,
      t.contiguous ? 'contiguous' : `not contiguous: ${t.contiguity.reason}`,
    ];
    // The root's output is named `output:` (its path is empty).
    const shared = t.storage?.sharedWith.map((n) => (n === 'output:' ? 'output:(root)' : n)) ?? [];
    if (shared.length) facts.push(`storage ${t.storage!.id} shared with ${shared.join(', ')}`);
    facts.push(
      t.view.wouldFail
        ? `view fails${t.view.error ? `: ${t.view.error.split('\n')[0]}` : ''}`
        : 'view works',
    );
    lines.push(`  ${r.path || '(root)'}: ${facts.join('; ')}`);
  }
  return lines.join('\n');
}

export function formatProfile(result: ProfileResult, topN: number): string {
  const lines: string[] = [];
  lines.push(
    `Step: ${result.stepMs.toFixed(3)} ms (median of ${result.steps}, timed with ${result.method})`,
    '',
  );
  const ops = [...result.ops].sort((a, b) => b.selfMs - a.selfMs).slice(0, topN);
  const total = result.ops.reduce((s, o) => s + o.selfMs, 0) || 1;
  // train mode runs the same op names forward and backward: a phase column tells them apart.
  const phases = result.ops.some((o) => o.phase && o.phase !== 'forward');
  const phaseCol = (o: (typeof ops)[number]): string => (phases ? pad(o.phase ?? '', 10) : '');
  lines.push(
    pad('Op', 34) +
      (phases ? pad('Phase', 10) : '') +
      pad('Calls', 8) +
      pad('Total ms', 12) +
      pad('Self ms', 12) +
      pad('Self %', 8) +
      'Input shapes',
  );
  lines.push('-'.repeat(WIDE_RULE_CHARS));
  for (const o of ops) {
    const shapes = o.inputShapes[0]?.map((s) => `[${s.join(',')}]`).join(' ') ?? '';
    lines.push(
      pad(o.name, 34) +
        phaseCol(o) +
        pad(String(o.calls), 8) +
        pad(o.totalMs.toFixed(3), 12) +
        pad(o.selfMs.toFixed(3), 12) +
        pad(((100 * o.selfMs) / total).toFixed(1), 8) +
        shapes,
    );
  }
  if (result.modules.length) {
    lines.push(
      '',
      pad('Module', 40) + pad('Type', 20) + pad('Calls', 8) + pad('Forward ms', 12) + 'Backward ms',
    );
    lines.push('-'.repeat(WIDE_RULE_CHARS));
    for (const m of result.modules) {
      lines.push(
        pad(m.path === '' ? '(root)' : m.path, 40) +
          pad(m.type, 20) +
          pad(String(m.calls), 8) +
          pad(m.forwardMs.toFixed(3), 12) +
          (m.backwardMs === undefined ? '--' : m.backwardMs.toFixed(3)),
      );
    }
  }
  for (const w of result.warnings) lines.push(`warning: ${w}`);
  if (result.traceFile)
    lines.push(
      '',
      `Trace written to ${result.traceFile} (open it in https://ui.perfetto.dev or chrome://tracing)`,
    );
  return lines.join('\n');
}

export function formatLocation(loc: SourceLocation): string {
  return `${loc.file}:${loc.line}${loc.column ? `:${loc.column}` : ''}`;
}

/** One error, with everything the engine said about where: `file:line`, layer, expected vs got. */
export function formatEngineError(message: string, data?: EngineErrorData): string {
  const lines = [`error: ${message}`];
  if (!data) return lines[0];
  if (data.location && !message.includes(formatLocation(data.location)))
    lines.push(`  at ${formatLocation(data.location)}`);
  if (data.layer && !message.includes(data.layer)) lines.push(`  layer: ${data.layer}`);
  if (data.expected !== undefined && !message.includes(data.expected))
    lines.push(`  expected: ${data.expected}`);
  if (data.got !== undefined && !message.includes(data.got)) lines.push(`  got: ${data.got}`);
  if (data.candidates?.length) lines.push(`  candidates: ${data.candidates.join(', ')}`);
  if (data.userStack?.length) {
    lines.push('  user frames (innermost last):');
    for (const f of data.userStack)
      lines.push(`    ${formatLocation(f)}${f.function ? ` in ${f.function}` : ''}`);
  }
  if (data.hint) lines.push(`  hint: ${data.hint}`);
  return lines.join('\n');
}
