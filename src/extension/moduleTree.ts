import * as vscode from 'vscode';
import type { BufferInfo, ModuleNode, ParameterInfo } from '../protocol/types';
import { formatCount, formatShape } from '../shared/format';
import { aliasesUnder, moduleDescription, moduleNotes } from './format';
import type { HookStore } from './hookStore';
import type { ModelState } from './modelState';

/** Where the tree providers read the current model from. */
export interface ModelSource {
  readonly model: ModelState | undefined;
  readonly hooks: HookStore;
}

/**
 * A second name of a shared module (`layers.2` when `layers[2] is layers[0]`): torch lists the
 * module once, under its first name, so without this row `layers.2` would be missing.
 */
export interface ModuleAlias {
  kind: 'alias';
  alias: string;
  target: ModuleNode;
}

export type ModuleElement = ModuleNode | ModuleAlias;

export function isAlias(e: ModuleElement): e is ModuleAlias {
  return (e as ModuleAlias).kind === 'alias';
}

/**
 * The Modules view. Children are looked up per node from the path index when VS Code asks, so
 * nothing is built for collapsed subtrees.
 */
export class ModulesProvider implements vscode.TreeDataProvider<ModuleElement> {
  private readonly changed = new vscode.EventEmitter<ModuleElement | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  /** Paths the user expanded (root counts as expanded until collapsed), kept across re-inspects. */
  readonly expanded = new Set<string>(['']);

  constructor(private readonly source: ModelSource) {}

  refresh(): void {
    this.changed.fire(undefined);
  }

  getChildren(element?: ModuleElement): ModuleElement[] {
    const model = this.source.model;
    if (!model) return [];
    if (!element) return model.root ? [model.root] : [];
    if (isAlias(element)) return [];
    const children: ModuleElement[] = model.children(element.path);
    // Shared modules are rare; only look for aliases when the model has any.
    if (model.hasAliases)
      for (const a of aliasesUnder(element.path, model.modules.values()))
        children.push({ kind: 'alias', ...a });
    return children;
  }

  getParent(element: ModuleElement): ModuleNode | undefined {
    const model = this.source.model;
    if (isAlias(element))
      return model?.modules.get(
        element.alias.slice(0, Math.max(0, element.alias.lastIndexOf('.'))),
      );
    return element.parent === null ? undefined : model?.modules.get(element.parent);
  }

  getTreeItem(element: ModuleElement): vscode.TreeItem {
    if (isAlias(element)) return aliasItem(element);
    const node = element;
    const model = this.source.model;
    const isRoot = node.path === '';
    const hasChildren = node.children.some((c) => model?.modules.has(c));
    const item = new vscode.TreeItem(
      isRoot ? (model?.load.name ?? node.type) : node.name,
      !hasChildren
        ? vscode.TreeItemCollapsibleState.None
        : this.expanded.has(node.path)
          ? vscode.TreeItemCollapsibleState.Expanded
          : vscode.TreeItemCollapsibleState.Collapsed,
    );
    item.id = `module:${node.path}`;
    const hooks = this.source.hooks.attachedOn(node.path);
    item.description = moduleDescription(node, model?.rows.get(node.path));
    item.accessibilityInformation = { label: isRoot ? 'Module (root)' : `Module ${node.path}` };
    item.contextValue = 'module';
    item.iconPath = new vscode.ThemeIcon(
      hooks.length
        ? 'debug-breakpoint-log'
        : node.frozen && node.totalParams > 0
          ? 'lock'
          : node.isLeaf
            ? 'symbol-field'
            : 'symbol-class',
    );
    item.tooltip = moduleTooltip(
      node,
      model,
      hooks.map((h) => h.kind),
    );
    return item;
  }
}

function aliasItem(a: ModuleAlias): vscode.TreeItem {
  const name = a.alias.slice(a.alias.lastIndexOf('.') + 1);
  const item = new vscode.TreeItem(name, vscode.TreeItemCollapsibleState.None);
  item.id = `module-alias:${a.alias}`;
  item.description = `= ${a.target.path} (shared) · ${a.target.type}`;
  item.tooltip = `${a.alias} is the same ${a.target.type} object as ${a.target.path}: its parameters are counted once, there.`;
  item.iconPath = new vscode.ThemeIcon('references');
  item.accessibilityInformation = { label: `Module ${a.alias}, shared with ${a.target.path}` };
  item.contextValue = 'moduleAlias';
  return item;
}

function moduleTooltip(
  node: ModuleNode,
  model: ModelState | undefined,
  hooks: string[],
): vscode.MarkdownString {
  const row = model?.rows.get(node.path);
  const md = new vscode.MarkdownString(undefined, false);
  md.appendMarkdown(`**${escapeMd(node.type)}** \`${escapeMd(node.path || '(root)')}\`\n\n`);
  const notes = moduleNotes(node, row);
  if (hooks.length) notes.unshift(`hooked (${hooks.join(', ')})`);
  if (notes.length) md.appendMarkdown(`${notes.map(escapeMd).join(' · ')}\n\n`);
  md.appendMarkdown(
    `Parameters: ${formatCount(node.totalParams)} (trainable ${formatCount(node.trainableParams)}, own ${formatCount(node.ownParams)})\n\n`,
  );
  if (row)
    md.appendMarkdown(
      `Output: ${formatShape(row.outputShape)} · MACs ${formatCount(row.macs)}${row.note ? ` · ${escapeMd(row.note)}` : ''}\n\n`,
    );
  if (!node.training) md.appendMarkdown('In eval mode (training=False)\n\n');
  if (node.frozen && node.totalParams > 0)
    md.appendMarkdown('Frozen: no parameter below requires grad\n\n');
  const def = node.source?.definition;
  if (def) md.appendMarkdown(`Defined at ${escapeMd(def.file)}:${def.line}`);
  return md;
}

function escapeMd(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!<>|]/g, '\\$&');
}

export type TensorElement =
  | { kind: 'module'; node: ModuleNode }
  | { kind: 'parameter'; info: ParameterInfo }
  | { kind: 'buffer'; info: BufferInfo };

/** The Parameters & Buffers view: the module hierarchy, pruned to modules that hold tensors. */
export class TensorsProvider implements vscode.TreeDataProvider<TensorElement> {
  private readonly changed = new vscode.EventEmitter<TensorElement | undefined>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly source: ModelSource) {}

  refresh(): void {
    this.changed.fire(undefined);
  }

  getChildren(element?: TensorElement): TensorElement[] {
    const model = this.source.model;
    if (!model) return [];
    if (element && element.kind !== 'module') return [];
    const path = element?.node.path ?? '';
    const out: TensorElement[] = [];
    for (const child of model.children(path))
      if (model.holdsTensors.has(child.path)) out.push({ kind: 'module', node: child });
    for (const info of model.params.get(path) ?? []) out.push({ kind: 'parameter', info });
    for (const info of model.buffers.get(path) ?? []) out.push({ kind: 'buffer', info });
    return out;
  }

  getTreeItem(element: TensorElement): vscode.TreeItem {
    if (element.kind === 'module') {
      const n = element.node;
      const item = new vscode.TreeItem(n.name, vscode.TreeItemCollapsibleState.Collapsed);
      item.id = `tensors-module:${n.path}`;
      item.description = `${n.type} · ${formatCount(n.totalParams)} params`;
      item.iconPath = new vscode.ThemeIcon('symbol-class');
      item.accessibilityInformation = { label: `Tensors of ${n.path}` };
      item.contextValue = 'tensorModule';
      return item;
    }
    const info = element.info;
    const t = info.tensor;
    const label = info.name.slice(info.module ? info.module.length + 1 : 0);
    const item = new vscode.TreeItem(label, vscode.TreeItemCollapsibleState.None);
    item.id = `${element.kind}:${info.name}`;
    const notes = [`${formatShape(t.shape)} ${t.dtype}`, `${formatCount(t.numel)}`];
    if (!t.contiguous) notes.push('non-contiguous');
    if (element.kind === 'parameter' && !element.info.requiresGrad) notes.push('frozen');
    if (element.kind === 'buffer' && !element.info.persistent) notes.push('not in state_dict');
    if (info.aliases.length) notes.push(`also ${info.aliases.join(', ')}`);
    item.description = notes.join(' · ');
    item.iconPath = new vscode.ThemeIcon(
      element.kind === 'parameter' ? 'symbol-variable' : 'symbol-constant',
    );
    item.accessibilityInformation = {
      label: `${element.kind === 'parameter' ? 'Parameter' : 'Buffer'} ${info.name}`,
    };
    item.contextValue = element.kind;
    item.tooltip = `${info.name}: ${formatShape(t.shape)} ${t.dtype} on ${t.device}, stride ${formatShape(t.stride)}`;
    item.command = {
      command: 'modelLens.inspectTensor',
      title: 'Inspect Tensor',
      arguments: [{ kind: element.kind, name: info.name }],
    };
    return item;
  }
}
