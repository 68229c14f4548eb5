// A tfjs-converter graph model (`"format": "graph-model"`) in the engine's vocabulary: op nodes
// are the leaf modules, their TensorFlow name scopes (`sequential/conv1/Conv2D`) the containers,
// and the Const nodes with stored values the weights — float ones parameters, the rest (shapes,
// axes) buffers. tfjs runs it with GraphModel.executeAsync; intermediate node outputs come from
// its KEEP_INTERMEDIATE_TENSORS mode.
import type * as tfTypes from '@tensorflow/tfjs';
import type { BufferInfo, DType, InputSpec, ModuleNode, ParameterInfo } from '../../protocol/types';
import type { Tf } from './backend';
import { fail } from './engineError';
import { checkDtype, checkInputSize, INPUT_SEED } from './inputSynthesis';
import { numelOf, tensorInfo } from './tensorFacts';

export const GRAPH_ROOT_TYPE = 'GraphModel';
export const SCOPE_TYPE = 'NameScope';
/** The converter wraps a Keras model's ops in this scope; it says nothing about the model. */
const WRAPPER_SCOPES = new Set(['StatefulPartitionedCall', 'PartitionedCall']);
/** Ops that are not computations of their own. */
const NOT_MODULES = new Set(['Const', 'Placeholder', 'NoOp']);
/** Ops with weights whose multiply-adds follow torchinfo's rule for convolutions. */
const CONV_OPS = /Conv2D|Conv3D|DepthwiseConv2d|Conv2DBackpropInput/;
const MATMUL_OPS = /MatMul/;

type GraphModel = tfTypes.GraphModel;

interface RawNode {
  name: string;
  op: string;
  input?: string[];
}

export interface GraphWeight {
  name: string;
  /** The Const node's name in the graph (the key of GraphModel.weights). */
  graphName: string;
  module: string;
  isBuffer: boolean;
  aliases: string[];
  shape: number[];
  dtype: string;
}

export interface GraphIndex {
  modules: ModuleNode[];
  /** Module path of an op node → the node's name in the graph. */
  nodeOf: Map<string, string>;
  opOf: Map<string, string>;
  weights: GraphWeight[];
  weightByName: Map<string, GraphWeight>;
  /** Parameters held by each leaf path. */
  ownParams: Map<string, number>;
  /** Module path of an op node → the graph nodes whose outputs it reads (weights excluded). */
  inputsOf: Map<string, string[]>;
}

export interface GraphSession {
  kind: 'graph';
  id: string;
  file: string;
  name: string;
  type: string;
  model: GraphModel;
  index: GraphIndex;
  inputs: InputSpec[];
  outputNames: string[];
  device: string;
  /** Shards the manifest lists that are not on disk: weights are placeholders then. */
  weightsMissing: string[];
  /** Hooks on node outputs by hookId: the graph nodes each one reads and where they go. */
  nodeHooks: Map<string, { nodes: string[]; emit: (ts: tfTypes.Tensor[]) => void }>;
}

/** `a/b/c:0` or `^a/b` → `a/b/c`. */
function nodeName(input: string): string {
  return input.replace(/^\^/, '').replace(/:\d+$/, '');
}

/** `StatefulPartitionedCall/sequential/conv1/Relu` → `sequential.conv1.Relu`. */
export function modulePath(name: string): string {
  const parts = name.split('/').filter((p) => p.length > 0);
  while (parts.length > 1 && WRAPPER_SCOPES.has(parts[0])) parts.shift();
  return parts.map((p) => p.replace(/\./g, '_')).join('.');
}

export function buildGraphIndex(topology: { node?: RawNode[] }, model: GraphModel): GraphIndex {
  const nodes = topology.node ?? [];
  const weightsMap = model.weights;
  const modules = new Map<string, ModuleNode>();
  const order: string[] = [];
  const root: ModuleNode = {
    path: '',
    name: '',
    type: GRAPH_ROOT_TYPE,
    depth: 0,
    parent: null,
    children: [],
    aliases: [],
    training: false,
    ownParams: 0,
    totalParams: 0,
    trainableParams: 0,
    frozen: false,
    isLeaf: false,
  };
  modules.set('', root);
  order.push('');
  const ensure = (path: string, type: string): ModuleNode => {
    const have = modules.get(path);
    if (have) {
      // A node whose name is also another node's scope: an op with children.
      if (type !== SCOPE_TYPE && have.type === SCOPE_TYPE) have.type = type;
      return have;
    }
    const dot = path.lastIndexOf('.');
    const parentPath = dot < 0 ? '' : path.slice(0, dot);
    const parent = ensure(parentPath, SCOPE_TYPE);
    const node: ModuleNode = {
      path,
      name: path.slice(dot + 1),
      type,
      depth: path.split('.').length,
      parent: parentPath,
      children: [],
      aliases: [],
      training: false,
      ownParams: 0,
      totalParams: 0,
      trainableParams: 0,
      frozen: false,
      isLeaf: true,
    };
    parent.children.push(path);
    parent.isLeaf = false;
    modules.set(path, node);
    order.push(path);
    return node;
  };
  const nodeOf = new Map<string, string>();
  const opOf = new Map<string, string>();
  const consumers = new Map<string, string[]>();
  const inputsOf = new Map<string, string[]>();
  for (const n of nodes) {
    if (NOT_MODULES.has(n.op)) continue;
    const p = modulePath(n.name);
    ensure(p, n.op);
    nodeOf.set(p, n.name);
    opOf.set(p, n.op);
    inputsOf.set(
      p,
      (n.input ?? [])
        .filter((i) => !i.startsWith('^'))
        .map(nodeName)
        .filter((i) => !(i in weightsMap)),
    );
    for (const i of n.input ?? []) {
      const src = nodeName(i);
      if (!(src in weightsMap)) continue;
      const list = consumers.get(src) ?? [];
      if (!list.includes(p)) list.push(p);
      consumers.set(src, list);
    }
  }
  const weights: GraphWeight[] = [];
  const ownParams = new Map<string, number>();
  for (const [name, tensors] of Object.entries(weightsMap)) {
    const t = tensors[0];
    if (!t) continue;
    const users = consumers.get(name) ?? [''];
    const isBuffer = t.dtype !== 'float32';
    const short = name.slice(name.lastIndexOf('/') + 1).replace(/\./g, '_');
    const names = users.map((u) => (u ? `${u}.${short}` : modulePath(name)));
    weights.push({
      name: names[0],
      graphName: name,
      module: users[0],
      isBuffer,
      aliases: names.slice(1),
      shape: [...t.shape],
      dtype: t.dtype,
    });
    if (!isBuffer) ownParams.set(users[0], (ownParams.get(users[0]) ?? 0) + t.size);
  }
  for (const p of order) modules.get(p)!.ownParams = ownParams.get(p) ?? 0;
  // Totals: own parameters of the subtree (each weight belongs to one module).
  for (const p of [...order].reverse()) {
    const m = modules.get(p)!;
    m.totalParams = m.ownParams + m.children.reduce((a, c) => a + modules.get(c)!.totalParams, 0);
    // A converted graph has no trainable variables: everything is a constant.
    m.trainableParams = 0;
    m.frozen = m.totalParams > 0;
  }
  const weightByName = new Map<string, GraphWeight>();
  for (const w of weights) for (const n of [w.name, ...w.aliases]) weightByName.set(n, w);
  return {
    modules: order.map((p) => modules.get(p)!),
    nodeOf,
    opOf,
    weights,
    weightByName,
    ownParams,
    inputsOf,
  };
}

/**
 * torchinfo's rule on op nodes: convolutions = weights × batch × output positions;
 * matmul = weights × output rows.
 */
export function graphMacs(op: string, params: number, outShape: number[] | undefined): number {
  if (!outShape || params === 0 || outShape.length === 0) return 0;
  if (CONV_OPS.test(op)) return params * numelOf(outShape.slice(0, -1));
  if (MATMUL_OPS.test(op)) return params * numelOf(outShape.slice(0, -1));
  return 0;
}

/** Signature inputs with unknown dims set to 1 (or the shapes asked for). */
export function graphInputs(
  model: GraphModel,
  requested?: number[][],
  dtypes?: (DType | null)[],
): InputSpec[] {
  const infos = model.inputs;
  if (requested && requested.length !== infos.length) {
    fail(
      'shapeMismatch',
      `The graph model has ${infos.length} input(s) but ${requested.length} shape(s) were given`,
      {
        expected: infos.map((i) => i.name).join(', '),
        got: `${requested.length}`,
      },
    );
  }
  return infos.map((info, i) => {
    const declared = info.shape ?? [];
    const asked = dtypes?.[i];
    const dtype = asked ? checkDtype(asked, `input ${info.name}`) : (info.dtype ?? 'float32');
    if (requested) return { shape: requested[i], dtype, source: 'request' };
    return {
      shape: declared.map((d) => (d === null || d < 0 ? 1 : d)),
      dtype,
      source: 'model',
      note:
        `${info.name} ${JSON.stringify(declared.map((d) => (d < 0 ? null : d)))} ` +
        "from the graph's signature; unknown dimensions set to 1",
    };
  });
}

export function makeGraphInputs(tf: Tf, s: GraphSession, specs = s.inputs): tfTypes.NamedTensorMap {
  const out: tfTypes.NamedTensorMap = {};
  s.model.inputs.forEach((info, i) => {
    const spec = specs[i];
    checkInputSize(spec);
    out[info.name] =
      spec.dtype === 'float32'
        ? tf.randomNormal(spec.shape, 0, 1, 'float32', INPUT_SEED)
        : tf.zeros(spec.shape, spec.dtype as tfTypes.DataType);
  });
  return out;
}

export function totalParamsOf(index: GraphIndex): { params: number; buffers: number } {
  let params = 0;
  let buffers = 0;
  for (const w of index.weights) {
    if (w.isBuffer) buffers += numelOf(w.shape);
    else params += numelOf(w.shape);
  }
  return { params, buffers };
}

export function graphParameterInfos(s: GraphSession): {
  parameters: ParameterInfo[];
  buffers: BufferInfo[];
} {
  const parameters: ParameterInfo[] = [];
  const buffers: BufferInfo[] = [];
  for (const w of s.index.weights) {
    const t = tensorInfo(w.shape, w.dtype, s.device, s.model.weights[w.graphName]?.[0], false);
    if (w.isBuffer)
      buffers.push({
        name: w.name,
        module: w.module,
        tensor: t,
        persistent: true,
        aliases: w.aliases,
      });
    else
      parameters.push({
        name: w.name,
        module: w.module,
        tensor: t,
        requiresGrad: false,
        aliases: w.aliases,
      });
  }
  return { parameters, buffers };
}

export function newGraphSession(
  id: string,
  loaded: {
    file: string;
    model: GraphModel;
    topology: { node?: RawNode[] };
    weightsMissing: string[];
  },
  device: string,
  inputShapes?: number[][],
  inputDtypes?: (DType | null)[],
): GraphSession {
  const model = loaded.model;
  const base = loaded.file.replace(/\\/g, '/').split('/');
  return {
    kind: 'graph',
    id,
    file: loaded.file,
    name: base.slice(-2).join('/'),
    type: GRAPH_ROOT_TYPE,
    model,
    index: buildGraphIndex(loaded.topology, model),
    inputs: graphInputs(model, inputShapes, inputDtypes),
    outputNames: model.outputs.map((o) => o.name),
    device,
    weightsMissing: loaded.weightsMissing,
    nodeHooks: new Map(),
  };
}
