// Text formatting shared by the tree views, the status bar and "Copy as text".
// No `vscode` import here: unit tests run this without an editor.
import type { ModuleNode, SummaryRow, SummaryTotals } from '../protocol/types';
import type { SummaryResult } from '../protocol/messages';

/** `1234567` → `1,234,567`, independent of the user's locale so tests and the e2e harness agree. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatShape(shape: number[] | number[][] | null | undefined): string {
  if (!shape) return '--';
  if (shape.length > 0 && Array.isArray(shape[0])) return (shape as number[][]).map((s) => `[${s.join(', ')}]`).join(', ');
  return `[${(shape as number[]).join(', ')}]`;
}

/** Decimal megabytes, as torchinfo prints them. */
export function formatMB(bytes: number): string {
  return (bytes / 1e6).toFixed(2);
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Tree item description: `Linear · [1, 10] · 50 params · also at blocks.1 · frozen · eval`. */
export function moduleDescription(node: ModuleNode, row: SummaryRow | undefined): string {
  const parts = [node.type];
  if (row?.outputShape) parts.push(formatShape(row.outputShape));
  parts.push(`${formatCount(node.totalParams)} params`);
  if (node.aliases.length) parts.push(`also at ${node.aliases.join(', ')}`);
  if (node.frozen && node.totalParams > 0) parts.push('frozen');
  if (!node.training) parts.push('eval');
  if (row && !row.ran) parts.push('not run');
  return parts.join(' · ');
}

/**
 * `modelLens.defaultInputShape`: `1,3,224,224` for one input, `1,3,32,32; 1,10` for several.
 * Returns undefined for an empty setting (let the engine infer) and throws on a malformed one.
 */
export function parseInputShapes(setting: string | undefined): number[][] | undefined {
  const text = (setting ?? '').trim();
  if (!text) return undefined;
  return text.split(';').map((part) => {
    const dims = part
      .replace(/[[\]()]/g, '')
      .split(/[,x×\s]+/)
      .filter(Boolean)
      .map(Number);
    if (dims.length === 0 || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new Error(
        `modelLens.defaultInputShape: "${part.trim()}" is not a shape; use positive integers like "1,3,224,224" (separate several inputs with ";").`,
      );
    }
    return dims;
  });
}

const RULE_WIDTH = 90;

/** torchinfo-style text of a summary, for "Copy as text". */
export function summaryText(modelName: string, summary: SummaryResult): string {
  const rule = '='.repeat(RULE_WIDTH);
  const col = (s: string, w: number) => (s.length >= w ? `${s} ` : s.padEnd(w));
  const lines = [rule, col('Layer (type (var_name))', 50) + col('Output Shape', 25) + 'Param #', rule];
  for (const row of summary.rows) lines.push(summaryLine(modelName, row, col));
  const t: SummaryTotals = summary.totals;
  const macs = t.macs >= 1e9 ? `Total mult-adds (G): ${(t.macs / 1e9).toFixed(2)}` : `Total mult-adds (M): ${(t.macs / 1e6).toFixed(2)}`;
  lines.push(
    rule,
    `Total params: ${formatCount(t.params)}`,
    `Trainable params: ${formatCount(t.trainableParams)}`,
    `Non-trainable params: ${formatCount(t.nonTrainableParams)}`,
    macs,
    rule,
    `Input size (MB): ${formatMB(t.inputBytes)}`,
    `Forward/backward pass size (MB): ${formatMB(t.forwardBackwardBytes)}`,
    `Params size (MB): ${formatMB(t.paramBytes)}`,
    `Estimated Total Size (MB): ${formatMB(t.totalBytes)}`,
    rule,
  );
  return lines.join('\n') + '\n';
}

function summaryLine(modelName: string, row: SummaryRow, col: (s: string, w: number) => string): string {
  const isRoot = row.path === '';
  const name = isRoot ? `${row.type} (${modelName})` : `${'│ '.repeat(Math.max(0, row.depth - 1))}└─${row.type} (${row.path.split('.').pop()})`;
  // torchinfo prints `--` for containers whose parameters are counted in their children.
  const params = !row.isLeaf && row.params === 0 ? '--' : formatCount(row.params);
  const shape = row.ran ? formatShape(row.outputShape) : '--';
  return col(name, 50) + col(shape, 25) + params;
}
