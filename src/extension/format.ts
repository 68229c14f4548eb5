// Text for the tree views and settings; numbers and shapes come from src/shared/format.ts.
// No `vscode` import here: unit tests run this without an editor.
import type { ModuleNode, SummaryRow } from '../protocol/types';
import { formatCount, formatShape } from '../shared/format';

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

