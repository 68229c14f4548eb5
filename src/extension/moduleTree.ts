import * as vscode from 'vscode';
import type { BufferInfo, ModuleNode, ParameterInfo } from '../protocol/types';
import { formatCount, formatShape } from '../shared/format';
import { moduleDescription } from './format';
import type { HookStore } from './hookStore';
import type { ModelState } from './modelState';

/** Where the tree providers read the current model from. */
export interface ModelSource {
  readonly model: ModelState | undefined;
  readonly hooks: HookStore;
}

/**
 * The Modules view. Children are looked up per node from the path index when VS Code asks, so
 * nothing is built for collapsed subtrees.
 */
export class ModulesProvider implements vscode.TreeDataProvider<ModuleNode> {
  private readonly changed = new vscode.EventEmitter<ModuleNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  /** Paths the user expanded (root counts as expanded until collapsed), kept across re-inspects. */
  readonly expanded = new Set<string>(['']);

  constructor(private readonly source: ModelSource) {}

  refresh(): void {
    this.changed.fire(undefined);
  }

  getChildren(node?: ModuleNode): ModuleNode[] {
    const model = this.source.model;
    if (!model) return [];
    if (!node) return model.root ? [model.root] : [];
    return model.children(node.path);
  }

  getParent(node: ModuleNode): ModuleNode | undefined {
    return node.parent === null ? undefined : this.source.model?.modules.get(node.parent);
  }

  getTreeItem(node: ModuleNode): vscode.TreeItem {
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
    const hookNote = hooks.length ? ` · hooked (${hooks.map((h) => h.kind).join(', ')})` : '';
    item.description = moduleDescription(node, model?.rows.get(node.path)) + hookNote;
    item.accessibilityInformation = { label: isRoot ? 'Module (root)' : `Module ${node.path}` };
    item.contextValue = 'module';
    item.iconPath = new vscode.ThemeIcon(
      hooks.length ? 'debug-breakpoint-log' : node.frozen && node.totalParams > 0 ? 'lock' : node.isLeaf ? 'symbol-field' : 'symbol-class',
    );
    item.tooltip = moduleTooltip(node, model);
    return item;
  }
}

function moduleTooltip(node: ModuleNode, model: ModelState | undefined): vscode.MarkdownString {
  const row = model?.rows.get(node.path);
  const md = new vscode.MarkdownString(undefined, false);
  md.appendMarkdown(`**${escapeMd(node.type)}** \`${escapeMd(node.path || '(root)')}\`\n\n`);
  md.appendMarkdown(`Parameters: ${formatCount(node.totalParams)} (trainable ${formatCount(node.trainableParams)}, own ${formatCount(node.ownParams)})\n\n`);
  if (row) md.appendMarkdown(`Output: ${formatShape(row.outputShape)} · MACs ${formatCount(row.macs)}${row.note ? ` · ${escapeMd(row.note)}` : ''}\n\n`);
  if (node.aliases.length) md.appendMarkdown(`Also registered at: ${node.aliases.map(escapeMd).join(', ')}\n\n`);
  if (!node.training) md.appendMarkdown('In eval mode (training=False)\n\n');
  if (node.frozen && node.totalParams > 0) md.appendMarkdown('Frozen: no parameter below requires grad\n\n');
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
    for (const child of model.children(path)) if (model.holdsTensors.has(child.path)) out.push({ kind: 'module', node: child });
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
    item.iconPath = new vscode.ThemeIcon(element.kind === 'parameter' ? 'symbol-variable' : 'symbol-constant');
    item.accessibilityInformation = { label: `${element.kind === 'parameter' ? 'Parameter' : 'Buffer'} ${info.name}` };
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
