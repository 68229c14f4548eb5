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

