// A loaded model as the views see it, indexed once so every tree node and lookup is O(1):
// a 10,000-module model must expand as fast as a 10-module one.
// No `vscode` import here: unit tests run this without an editor.
import type { ModelLoadResult, ModelTreeResult, SummaryResult } from '../protocol/messages';
import type {
  BufferInfo,
  EngineKind,
  ModuleNode,
  ParameterInfo,
  SummaryRow,
} from '../protocol/types';

export class ModelState {
  readonly modules = new Map<string, ModuleNode>();
  readonly rows = new Map<string, SummaryRow>();
  readonly params = new Map<string, ParameterInfo[]>();
  readonly buffers = new Map<string, BufferInfo[]>();
  /** Modules with a parameter or buffer somewhere below, for the Parameters & Buffers view. */
  readonly holdsTensors = new Set<string>();
  summary: SummaryResult | undefined;
  /** Some module is registered under a second name (a shared module). */
  readonly hasAliases: boolean;

  constructor(
    readonly file: string,
    readonly kind: EngineKind,
    readonly load: ModelLoadResult,
    readonly tree: ModelTreeResult,
  ) {
    for (const m of tree.modules) this.modules.set(m.path, m);
    this.hasAliases = tree.modules.some((m) => m.aliases.length > 0);
    for (const p of tree.parameters) push(this.params, p.module, p);
    for (const b of tree.buffers) push(this.buffers, b.module, b);
    for (const owner of [...this.params.keys(), ...this.buffers.keys()]) {
      for (
        let p: string | null | undefined = owner;
        p !== null && p !== undefined && !this.holdsTensors.has(p);
      ) {
        this.holdsTensors.add(p);
        p = this.modules.get(p)?.parent;
      }
    }
  }

  get modelId(): string {
    return this.load.modelId;
  }

  get root(): ModuleNode | undefined {
    return this.modules.get('');
  }

  setSummary(summary: SummaryResult): void {
    this.summary = summary;
    this.rows.clear();
    for (const r of summary.rows) this.rows.set(r.path, r);
  }

  children(path: string): ModuleNode[] {
    const node = this.modules.get(path);
    if (!node) return [];
    const out: ModuleNode[] = [];
    for (const c of node.children) {
      const child = this.modules.get(c);
      if (child) out.push(child);
    }
    return out;
  }
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
