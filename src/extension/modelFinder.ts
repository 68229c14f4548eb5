// Finds the models a file defines, for CodeLens. A text heuristic on purpose: it runs on every
// keystroke-triggered CodeLens refresh, so it must never import or execute user code. The engine
// does the authoritative discovery when the user clicks.
// No `vscode` import here: unit tests run this without an editor.

export interface FoundModel {
  /** Class or export name, passed to model/load as `model`; undefined for a whole-file model (model.json). */
  name: string | undefined;
  /** 0-based line of the definition, where the CodeLens goes. */
  line: number;
}

/** Base classes that make a Python class an nn.Module without a local ancestor. */
const TORCH_BASE = /^(?:torch\.)?(?:nn\.)?Module$|^(?:torch\.)?nn\.[A-Z]\w*$/;
const PY_CLASS = /^class[ \t]+([A-Za-z_]\w*)[ \t]*\(([^)]*)\)[ \t]*(?:->[^:]*)?:/gm;

export function findPythonModels(text: string): FoundModel[] {
  const classes: { name: string; bases: string[]; line: number }[] = [];
  for (const m of text.matchAll(PY_CLASS)) {
    const bases = m[2]
      .split(',')
      .map((b) => b.replace(/#.*$/gm, '').trim())
      .filter((b) => b && !b.includes('='));
    classes.push({ name: m[1], bases, line: lineOf(text, m.index ?? 0) });
  }
  // A class deriving from another module class in the same file is a module too, at any depth.
  const modules = new Set<string>();
  for (let changed = true; changed;) {
    changed = false;
    for (const c of classes) {
      if (modules.has(c.name)) continue;
      if (c.bases.some((b) => TORCH_BASE.test(b) || modules.has(b))) {
        modules.add(c.name);
        changed = true;
      }
    }
  }
  return classes.filter((c) => modules.has(c.name)).map((c) => ({ name: c.name, line: c.line }));
}

const JS_EXPORT =
  /^export[ \t]+(?:default[ \t]+)?(?:(?:async[ \t]+)?function\*?[ \t]*([A-Za-z_$][\w$]*)|(?:const|let|var)[ \t]+([A-Za-z_$][\w$]*))|^(?:module\.)?exports\.([A-Za-z_$][\w$]*)[ \t]*=/gm;
/** Exports that are models by name, whatever their body looks like. */
const MODEL_EXPORT_NAMES = new Set(['model', 'createModel', 'buildModel', 'makeModel', 'getModel']);
const CREATES_MODEL =
  /\btf\.(?:sequential|model|loadLayersModel|loadGraphModel)\s*\(|(?:^|[^.\w$])(?:sequential|loadLayersModel)\s*\(/;

export function findJsModels(text: string): FoundModel[] {
  const exports = [...text.matchAll(JS_EXPORT)];
  const found: FoundModel[] = [];
  exports.forEach((m, i) => {
    const name = m[1] ?? m[2] ?? m[3];
    if (!name) return;
    // An export's body runs to the next top-level export: good enough to see what it builds.
    const body = text.slice(m.index ?? 0, exports[i + 1]?.index ?? text.length);
    if (MODEL_EXPORT_NAMES.has(name) || CREATES_MODEL.test(body)) {
      found.push({ name, line: lineOf(text, m.index ?? 0) });
    }
  });
  return found;
}

/** Models in a file, by its name: Python classes, JS/TS exports, or a whole TF.js model.json. */
export function findModels(fileName: string, text: string): FoundModel[] {
  const lower = fileName.toLowerCase();
  if (lower.endsWith('.py')) return findPythonModels(text);
  if (/\.(?:[cm]?js|[cm]?ts|jsx|tsx)$/.test(lower)) return findJsModels(text);
  if (lower.endsWith('model.json') && /"modelTopology"|"format"\s*:\s*"layers-model"/.test(text)) {
    return [{ name: undefined, line: 0 }];
  }
  return [];
}

function lineOf(text: string, index: number): number {
  let line = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) line++;
  return line;
}
