// Text for the tree views and settings; numbers and shapes come from src/shared/format.ts.
// No `vscode` import here: unit tests run this without an editor.
import type { ModuleNode, SummaryRow } from '../protocol/types';
import { formatCount, formatShape } from '../shared/format';

/**
 * Tree item description, what matters first so a narrow side bar cuts only the least useful:
 * `[1, 10] · 50 params · Linear`. The root's label already names the model, so no type there.
 * Aliases, frozen, eval mode and "not run" are in the tooltip (moduleNotes) and the icon.
 */
export function moduleDescription(node: ModuleNode, row: SummaryRow | undefined): string {
  const parts: string[] = [];
  if (row?.outputShape) parts.push(formatShape(row.outputShape));
  else if (row && !row.ran) parts.push('not run');
  parts.push(`${formatCount(node.totalParams)} params`);
  if (node.path !== '') parts.push(node.type);
  return parts.join(' · ');
}

/** What the description leaves out: `also at shared`, `frozen`, `eval`, `not run`. */
export function moduleNotes(node: ModuleNode, row: SummaryRow | undefined): string[] {
  const notes: string[] = [];
  if (node.aliases.length) notes.push(`also at ${node.aliases.join(', ')}`);
  if (node.frozen && node.totalParams > 0) notes.push('frozen');
  if (!node.training) notes.push('eval');
  if (row && !row.ran) notes.push('not run');
  return notes;
}

/** The alias paths registered under `parent` (a shared module's other names), for tree rows. */
export function aliasesUnder(
  parent: string,
  modules: Iterable<ModuleNode>,
): { alias: string; target: ModuleNode }[] {
  const prefix = parent === '' ? '' : `${parent}.`;
  const out: { alias: string; target: ModuleNode }[] = [];
  for (const m of modules) {
    for (const a of m.aliases) {
      if (a.startsWith(prefix) && !a.slice(prefix.length).includes('.'))
        out.push({ alias: a, target: m });
    }
  }
  return out;
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
