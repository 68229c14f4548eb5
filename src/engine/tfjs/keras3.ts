// Keras 3 writes model configs in a layout tfjs 4 cannot read (tfjs: "An InputLayer should be
// passed either a batchInputShape or an inputShape"): every object is wrapped as {module,
// class_name, config, registered_name}, dtypes are DTypePolicy objects, InputLayer has
// `batch_shape`, and inbound_nodes are {args, kwargs} with __keras_tensor__ entries. This turns
// such a topology into the Keras 2 layout, which tfjs reads.
import { fail } from './engineError';

type Json = unknown;
type Obj = Record<string, Json>;

/** Keras 3 class names tfjs knows by their Keras 2 name. */
const CLASS_RENAMES: Record<string, string> = {
  OrthogonalInitializer: 'Orthogonal',
  IdentityInitializer: 'Identity',
  Functional: 'Model',
};

const isObj = (v: Json): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keras 3 marks: its version, the wrapped-object keys, `batch_shape` or a DTypePolicy. */
export function isKeras3Topology(topo: Obj): boolean {
  const version = topo.keras_version;
  if (typeof version === 'string' && /^3\./.test(version)) return true;
  let found = false;
  const walk = (v: Json, depth: number): void => {
    if (found || depth > 12) return;
    if (Array.isArray(v)) v.forEach((x) => walk(x, depth + 1));
    else if (isObj(v)) {
      if ('batch_shape' in v || ('registered_name' in v && 'module' in v && 'class_name' in v))
        found = true;
      else Object.values(v).forEach((x) => walk(x, depth + 1));
    }
  };
  walk(topo, 0);
  return found;
}

/** [layer, nodeIndex, tensorIndex] of a Keras 3 tensor reference. */
function history(t: Json): [string, number, number] | null {
  if (!isObj(t) || t.class_name !== '__keras_tensor__' || !isObj(t.config)) return null;
  const h = t.config.keras_history;
  if (!Array.isArray(h) || typeof h[0] !== 'string') return null;
  return [h[0], Number(h[1] ?? 0), Number(h[2] ?? 0)];
}

function inboundNode(file: string, layer: string, node: Json): Json[] {
  if (Array.isArray(node)) return node; // Already the Keras 2 layout.
  if (!isObj(node) || !Array.isArray(node.args)) {
    return fail(
      'unsupported',
      `${file}: layer '${layer}' has an inbound node Model Lens cannot read (Keras 3 layout)`,
      {
        layer,
        hint:
          'Re-export the model with tf_keras (Keras 2), or with tensorflowjs_converter ' +
          'from a Keras 2 model.',
      },
    );
  }
  const tensors = (
    node.args.length === 1 && Array.isArray(node.args[0]) ? node.args[0] : node.args
  ) as Json[];
  const kwargs = isObj(node.kwargs) ? convert(file, node.kwargs) : {};
  const refs = tensors
    .map((t) => history(t))
    .filter((h): h is [string, number, number] => h !== null);
  return refs.map((h) => [...h, kwargs]);
}

function convert(file: string, v: Json): Json {
  if (Array.isArray(v)) return v.map((x) => convert(file, x));
  if (!isObj(v)) return v;
  // {module, class_name, config, registered_name} → {class_name, config}.
  if ('class_name' in v && 'config' in v && ('module' in v || 'registered_name' in v)) {
    if (v.class_name === 'DTypePolicy' || v.class_name === 'Policy') {
      return isObj(v.config) && typeof v.config.name === 'string' ? v.config.name : 'float32';
    }
    const cls = String(v.class_name);
    const out: Obj = { class_name: CLASS_RENAMES[cls] ?? cls, config: convert(file, v.config) };
    if ('name' in v) out.name = v.name;
    if (Array.isArray(v.inbound_nodes)) {
      const layer = String((isObj(v.config) && v.config.name) ?? v.name ?? '?');
      out.inbound_nodes = v.inbound_nodes.map((n) => inboundNode(file, layer, n));
    }
    return out;
  }
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'build_config' || k === 'compile_config') continue;
    const name = k === 'batch_shape' ? 'batch_input_shape' : k;
    if (
      (k === 'input_layers' || k === 'output_layers') &&
      Array.isArray(x) &&
      typeof x[0] === 'string'
    ) {
      out[name] = [x];
    } else if (k === 'output_layers' && isObj(x)) {
      // Keras 3 names the outputs of a model built with a dict; tfjs keeps their order.
      out[name] = Object.values(x);
    } else if (k === 'inbound_nodes' && Array.isArray(x)) {
      out[name] = x.map((n) => inboundNode(file, String(v.name ?? '?'), n));
    } else {
      out[name] = convert(file, x);
    }
  }
  return out;
}

export function keras3ToKeras2(file: string, topo: Obj): Obj {
  const out = convert(file, topo) as Obj;
  // The model_config wrapper of converter output, or the bare model config.
  if (isObj(out.model_config)) out.model_config.keras_version = '2.15.0';
  out.keras_version = '2.15.0';
  return out;
}
