// The module tree in PyTorch's vocabulary. Paths are dotted layer names below the root ("");
// a layer object reachable from several parents is one node whose other paths are `aliases`;
// weights created non-trainable (BatchNorm moving stats) are buffers, every other weight is a
// parameter, and freezing a layer only clears requiresGrad.
import type * as tfTypes from '@tensorflow/tfjs';
import type { BufferInfo, ModuleNode, ParameterInfo } from '../../protocol/types';
import { numelOf, tensorInfo } from './tensorFacts';

type Layer = tfTypes.layers.Layer;
type Variable = tfTypes.LayerVariable;

export interface WeightEntry {
  name: string;
  module: string;
  variable: Variable;
  isBuffer: boolean;
  requiresGrad: boolean;
  aliases: string[];
}

export interface LayerIndex {
  modules: ModuleNode[];
  layerAt: Map<string, Layer>;
  pathOf: Map<Layer, string>;
  weights: WeightEntry[];
  weightByName: Map<string, WeightEntry>;
  /** Leaf layers, once each, in tree order. */
  leaves: Layer[];
}

export function classNameOf(layer: Layer): string {
  const ctor = layer.constructor as { className?: string };
  return ctor.className ?? layer.getClassName();
}

export function childrenOf(layer: Layer): Layer[] {
  const l = layer as unknown as {
    layers?: Layer[];
    layer?: Layer;
    forwardLayer?: Layer;
    backwardLayer?: Layer;
  };
  if (Array.isArray(l.layers)) return l.layers.filter((c) => classNameOf(c) !== 'InputLayer');
  if (l.forwardLayer && l.backwardLayer) return [l.forwardLayer, l.backwardLayer];
  if (l.layer && typeof l.layer === 'object' && 'apply' in l.layer) return [l.layer];
  return [];
}

function shortName(v: Variable): string {
  const n = (v as unknown as { originalName?: string }).originalName ?? v.name;
  return n.slice(n.lastIndexOf('/') + 1);
}

function join(parent: string, name: string): string {
  return parent ? `${parent}.${name}` : name;
}

export function buildLayerIndex(root: tfTypes.LayersModel): LayerIndex {
  const nodes = new Map<Layer, ModuleNode>();
  const order: Layer[] = [];
  const layerAt = new Map<string, Layer>();
  const pathOf = new Map<Layer, string>();
  /** Whether the layer and all its ancestors (on its first path) are trainable. */
  const chainTrainable = new Map<Layer, boolean>();

  const visit = (
    layer: Layer,
    path: string,
    parent: ModuleNode | null,
    parentTrainable: boolean,
  ): void => {
    if (parent) parent.children.push(path);
    const seen = nodes.get(layer);
    layerAt.set(path, layer);
    if (seen) {
      seen.aliases.push(path);
      return;
    }
    const node: ModuleNode = {
      path,
      name: path.slice(path.lastIndexOf('.') + 1),
      type: classNameOf(layer),
      depth: path === '' ? 0 : path.split('.').length,
      parent: parent ? parent.path : null,
      children: [],
      aliases: [],
      training: true,
      ownParams: 0,
      totalParams: 0,
      trainableParams: 0,
      frozen: false,
      isLeaf: true,
    };
    nodes.set(layer, node);
    order.push(layer);
    pathOf.set(layer, path);
    const trainable = parentTrainable && layer.trainable;
    chainTrainable.set(layer, trainable);
    for (const child of childrenOf(layer)) visit(child, join(path, child.name), node, trainable);
    node.isLeaf = node.children.length === 0;
  };
  visit(root as unknown as Layer, '', null, true);

  const weights: WeightEntry[] = [];
  const byVariable = new Map<Variable, WeightEntry>();
  const ownOf = new Map<Layer, Variable[]>();
  for (const layer of order) {
    const below = new Set<Variable>();
    for (const c of childrenOf(layer)) for (const w of c.weights) below.add(w);
    const nonTrainable = new Set(
      (layer as unknown as { _nonTrainableWeights?: Variable[] })._nonTrainableWeights ?? [],
    );
    const own = layer.weights.filter((w) => !below.has(w));
    ownOf.set(layer, own);
    const node = nodes.get(layer)!;
    const paths = [node.path, ...node.aliases];
    for (const v of own) {
      const names = paths.map((p) => join(p, shortName(v)));
      const existing = byVariable.get(v);
      if (existing) {
        existing.aliases.push(...names);
        continue;
      }
      const isBuffer = nonTrainable.has(v);
      const entry: WeightEntry = {
        name: names[0],
        module: node.path,
        variable: v,
        isBuffer,
        requiresGrad: !isBuffer && v.trainable && chainTrainable.get(layer) !== false,
        aliases: names.slice(1),
      };
      byVariable.set(v, entry);
      weights.push(entry);
    }
  }

  // Totals count each parameter once even when its layer sits at several paths.
  const subtreeParams = (layer: Layer, acc: Set<WeightEntry>, seen: Set<Layer>): void => {
    if (seen.has(layer)) return;
    seen.add(layer);
    for (const v of ownOf.get(layer) ?? []) {
      const e = byVariable.get(v);
      if (e && !e.isBuffer) acc.add(e);
    }
    for (const c of childrenOf(layer)) subtreeParams(c, acc, seen);
  };
  for (const layer of order) {
    const node = nodes.get(layer)!;
    node.ownParams = (ownOf.get(layer) ?? [])
      .filter((v) => !byVariable.get(v)?.isBuffer)
      .reduce((a, v) => a + numelOf(v.shape), 0);
    const acc = new Set<WeightEntry>();
    subtreeParams(layer, acc, new Set());
    node.totalParams = [...acc].reduce((a, e) => a + numelOf(e.variable.shape), 0);
    node.trainableParams = [...acc]
      .filter((e) => e.requiresGrad)
      .reduce((a, e) => a + numelOf(e.variable.shape), 0);
    node.frozen = node.totalParams > 0 && node.trainableParams === 0;
  }
  const weightByName = new Map<string, WeightEntry>();
  for (const e of weights) for (const n of [e.name, ...e.aliases]) weightByName.set(n, e);
  return {
    modules: order.map((l) => nodes.get(l)!),
    layerAt,
    pathOf,
    weights,
    weightByName,
    leaves: order.filter((l) => nodes.get(l)!.isLeaf),
  };
}

export function parameterInfos(
  index: LayerIndex,
  device: string,
): { parameters: ParameterInfo[]; buffers: BufferInfo[] } {
  const parameters: ParameterInfo[] = [];
  const buffers: BufferInfo[] = [];
  for (const e of index.weights) {
    const t = tensorInfo(
      e.variable.shape as number[],
      e.variable.dtype,
      device,
      e.variable.read(),
      e.isBuffer ? false : e.requiresGrad,
    );
    if (e.isBuffer)
      buffers.push({
        name: e.name,
        module: e.module,
        tensor: t,
        persistent: true,
        aliases: e.aliases,
      });
    else
      parameters.push({
        name: e.name,
        module: e.module,
        tensor: t,
        requiresGrad: e.requiresGrad,
        aliases: e.aliases,
      });
  }
  return { parameters, buffers };
}
