"""The model's inputs: what a request asks for (shape, dtype, keyword name), what the file offers
(`example_input`: a tensor, a tuple of them, or a dict of keyword arguments), or what the first
layer implies (integer token ids below `num_embeddings` for an Embedding)."""

import os

import torch
import torch.nn as nn

from .errors import bad_request, user_fault
from .tensors import dtype_name

EXAMPLE_INPUT_NAME = "example_input"
# Spatial size assumed when an input is inferred from a convolution: small enough for a quick
# summary on a CPU, large enough for the usual stem (stride-2 conv + pool) and 4 downsamplings.
INFERRED_SPATIAL = {1: (64,), 2: (64, 64), 3: (16, 16, 16)}
INFERRED_SEQUENCE_LENGTH = 8
# Token ids are drawn from a fixed generator so that two summaries of one model agree.
TOKEN_ID_SEED = 0
DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "long": torch.int64,
    "int32": torch.int32,
    "int": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


class Inputs(list):
    """Input tensors in order, with a keyword name for those passed as keyword arguments
    (None for positional ones). A plain list is all positional."""

    def __init__(self, tensors=(), names=None):
        super().__init__(tensors)
        self.names = list(names) if names is not None else [None] * len(self)


def split(inputs):
    """(args, kwargs) to call a module with."""
    names = getattr(inputs, "names", None) or [None] * len(inputs)
    args = [t for t, n in zip(inputs, names) if n is None]
    kwargs = {n: t for t, n in zip(inputs, names) if n is not None}
    return args, kwargs


def call(module, inputs):
    args, kwargs = split(inputs)
    return module(*args, **kwargs)


def _is_lazy_module(m):
    mixin = getattr(getattr(nn.modules, "lazy", None), "LazyModuleMixin", None)
    return mixin is not None and isinstance(m, mixin) and m.has_uninitialized_params()


def first_embedding(module):
    """The Embedding that receives the model's input, when the first layer that fixes an input
    is one; None otherwise."""
    inferred = infer_input(module)
    return inferred[3] if inferred and isinstance(inferred[3], nn.Embedding) else None


def infer_input(module):
    """A plausible input from the first layer that fixes one; batch 1.
    Returns (shape, dtype, note, layer) or None."""
    for path, m in module.named_modules():
        name = path or "(root)"
        if _is_lazy_module(m):
            continue  # its input size is what the forward pass will tell it
        if isinstance(m, nn.Linear):
            note = "inferred from %s (Linear, in_features=%d) with batch 1" % (name, m.in_features)
            return [1, m.in_features], torch.float32, note, m
        if isinstance(
            m,
            (
                nn.Conv1d,
                nn.Conv2d,
                nn.Conv3d,
                nn.ConvTranspose1d,
                nn.ConvTranspose2d,
                nn.ConvTranspose3d,
            ),
        ):
            spatial = list(INFERRED_SPATIAL[len(m.kernel_size)])
            note = (
                "inferred from %s (%s, in_channels=%d) with batch 1 and a guessed spatial size %s"
                % (name, type(m).__name__, m.in_channels, "×".join(str(s) for s in spatial))
            )
            return [1, m.in_channels] + spatial, torch.float32, note, m
        if isinstance(m, nn.Embedding):
            note = (
                "inferred from %s (Embedding, %d entries): token ids below %d, batch 1, length %d"
                % (name, m.num_embeddings, m.num_embeddings, INFERRED_SEQUENCE_LENGTH)
            )
            return [1, INFERRED_SEQUENCE_LENGTH], torch.int64, note, m
        if isinstance(m, nn.RNNBase):
            n = INFERRED_SEQUENCE_LENGTH
            shape = [1, n, m.input_size] if m.batch_first else [n, 1, m.input_size]
            note = "inferred from %s (%s, input_size=%d), batch 1, sequence length %d" % (
                name,
                type(m).__name__,
                m.input_size,
                n,
            )
            return shape, torch.float32, note, m
        if isinstance(
            m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.MultiheadAttention)
        ):
            d = m.self_attn.embed_dim if hasattr(m, "self_attn") else m.embed_dim
            n = INFERRED_SEQUENCE_LENGTH
            shape = [1, n, d] if getattr(m, "batch_first", False) else [n, 1, d]
            note = "inferred from %s (%s, d_model=%d), batch 1, sequence length %d" % (
                name,
                type(m).__name__,
                d,
                n,
            )
            return shape, torch.float32, note, m
        if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)):
            n = m.num_features if isinstance(m, nn.BatchNorm1d) else list(m.normalized_shape)[-1]
            note = "inferred from %s (%s, %d features) with batch 1" % (name, type(m).__name__, n)
            return [1, n], torch.float32, note, m
    return None


# A synthesized input may take at most this share of the engine's memory ceiling (or of the
# machine's memory without one), as the CLI checks `--input` before it starts an engine: inputs
# from the editor or a request are checked here, before anything is allocated.
INPUT_MEMORY_SHARE = 0.5


def _input_bytes_limit():
    from .watchdog import MEMORY_LIMIT_MB

    if MEMORY_LIMIT_MB[0] > 0:
        return int(MEMORY_LIMIT_MB[0] * 2**20 * INPUT_MEMORY_SHARE)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(total * INPUT_MEMORY_SHARE)


def _check_input_size(shape, dtype, device):
    if torch.device(device).type == "meta":
        return
    numel = 1
    for d in shape:
        numel *= d
    size = numel * torch.empty((), dtype=dtype).element_size()
    limit = _input_bytes_limit()
    if limit is not None and size > limit:
        raise bad_request(
            "input too large: shape %s %s is %s bytes (%.1f GiB); this engine allows %.1f GiB for "
            "its inputs. Pass a smaller --input (or modelLens.defaultInputShape)."
            % (list(shape), dtype_name(dtype), format(size, ","), size / 2**30, limit / 2**30),
            got=list(shape),
        )


def make_tensor(shape, dtype, device, embedding=None):
    """Random floats; for integer dtypes, ids below the first Embedding's size (zeros when the
    model has none: always a valid index)."""
    _check_input_size(shape, dtype, device)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(*shape, dtype=dtype, device=device)
    if dtype == torch.bool:
        return torch.ones(*shape, dtype=dtype, device=device)
    if embedding is not None and embedding.num_embeddings > 0:
        g = torch.Generator().manual_seed(TOKEN_ID_SEED)
        ids = torch.randint(0, embedding.num_embeddings, tuple(shape), generator=g)
        return ids.to(dtype=dtype, device=device)
    return torch.zeros(*shape, dtype=dtype, device=device)


def make_inputs(shapes, dtypes, device, embedding=None):
    return [make_tensor(s, d, device, embedding) for s, d in zip(shapes, dtypes)]


def check_shapes(shapes):
    if (
        not isinstance(shapes, list)
        or not shapes
        or not all(
            isinstance(s, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)
            for s in shapes
        )
    ):
        raise bad_request(
            "inputShapes must be a non-empty list of shapes (lists of non-negative "
            "integers), got %r" % (shapes,)
        )


def parse_dtype(name, where):
    dt = DTYPES.get(str(name).lower().replace("torch.", ""))
    if dt is None:
        raise bad_request(
            "%s: unknown dtype %r; one of %s" % (where, name, ", ".join(sorted(DTYPES)))
        )
    return dt


def check_requests(inputs):
    """Validates `inputs: [{shape, dtype?, name?}]`; returns [(shape, dtype or None, name)]."""
    if not isinstance(inputs, list) or not inputs:
        raise bad_request(
            "inputs must be a non-empty list of {shape, dtype?, name?}, got %r" % (inputs,)
        )
    out = []
    seen = set()
    for i, r in enumerate(inputs):
        where = "inputs[%d]" % i
        if not isinstance(r, dict):
            raise bad_request("%s must be {shape, dtype?, name?}, got %r" % (where, r))
        check_shapes([r.get("shape")])
        dt = parse_dtype(r["dtype"], where) if r.get("dtype") is not None else None
        name = r.get("name")
        if name is not None and (not isinstance(name, str) or not name.isidentifier()):
            raise bad_request(
                "%s: name must be a Python identifier (a forward() argument), got %r"
                % (where, name)
            )
        if name is not None and name in seen:
            raise bad_request("%s: input %r is given twice" % (where, name))
        if name is None and seen:
            raise bad_request(
                "%s: a positional input cannot follow a named one (%s)"
                % (where, ", ".join(sorted(seen)))
            )
        if name is not None:
            seen.add(name)
        out.append((list(r["shape"]), dt, name))
    return out


def from_request(module, requests, device):
    """Tensors for request inputs; a missing dtype is int64 for a model whose first layer is an
    Embedding, float32 otherwise. Returns (Inputs, specs)."""
    emb = first_embedding(module)
    default = torch.int64 if emb is not None else torch.float32
    tensors, names, specs = [], [], []
    for shape, dt, name in requests:
        dt = dt or default
        tensors.append(make_tensor(shape, dt, device, emb))
        names.append(name)
        spec = {"shape": shape, "dtype": dtype_name(dt), "source": "request"}
        if name is not None:
            spec["name"] = name
        if not dt.is_floating_point and emb is not None:
            spec["note"] = "token ids below %d (the first Embedding's size)" % emb.num_embeddings
        specs.append(spec)
    return Inputs(tensors, names), specs


def requests_of(params):
    """The request's inputs: `inputs` ({shape, dtype?, name?}), else `inputShapes` with the
    optional `inputDtypes` beside them (one per input, null for the default)."""
    if params.get("inputs") is not None:
        return check_requests(params["inputs"])
    shapes = params.get("inputShapes")
    if shapes:
        check_shapes(shapes)
        dtypes = params.get("inputDtypes") or []
        if not isinstance(dtypes, list) or len(dtypes) > len(shapes):
            raise bad_request(
                "inputDtypes must be a list with at most one dtype per input shape, got %r"
                % (dtypes,)
            )
        dtypes = dtypes + [None] * (len(shapes) - len(dtypes))
        return [
            (list(s), parse_dtype(d, "inputDtypes[%d]" % i) if d is not None else None, None)
            for i, (s, d) in enumerate(zip(shapes, dtypes))
        ]
    return None


def _to_model_device(t, device, name, index):
    """The example tensor on the model's device. A meta tensor has no values to move: that is a
    device mismatch in the user's `example_input`, said as such (not an engine error)."""
    if t.device.type == "meta" and torch.device(device).type != "meta":
        what = (
            "%s[%r]" % (EXAMPLE_INPUT_NAME, name)
            if name is not None
            else (EXAMPLE_INPUT_NAME if index == 0 else "%s[%d]" % (EXAMPLE_INPUT_NAME, index))
        )
        raise user_fault(
            "deviceMismatch",
            "Device mismatch: %s is on meta (shapes only, no values) but the model's parameters "
            "are on %s." % (what, device),
            expected=str(device),
            got="meta",
            hint="Make %s on %s (or leave it out and pass --input SHAPE)." % (what, device),
        )
    return t.to(device)


def _example(value, device):
    """(Inputs, specs) for an `example_input` value, or None when it is none of the kinds."""
    note = "module-level `%s`" % EXAMPLE_INPUT_NAME
    if isinstance(value, torch.Tensor):
        pairs = [(None, value)]
    elif (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        pairs = [(None, v) for v in value]
    elif (
        isinstance(value, dict)
        and value
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    ):
        pairs = list(value.items())
    else:
        return None
    tensors = Inputs(
        [_to_model_device(t, device, n, i) for i, (n, t) in enumerate(pairs)], [n for n, _ in pairs]
    )
    specs = []
    for n, t in pairs:
        spec = {
            "shape": list(t.shape),
            "dtype": dtype_name(t.dtype),
            "source": "example",
            "note": note,
        }
        if n is not None:
            spec["name"] = n
        specs.append(spec)
    return tensors, specs


def resolve(module, user_module, requests, device):
    """Returns (Inputs or None, specs, warnings)."""
    if requests:
        tensors, specs = from_request(module, requests, device)
        return tensors, specs, []
    example = getattr(user_module, EXAMPLE_INPUT_NAME, None) if user_module is not None else None
    if example is not None:
        got = _example(example, device)
        if got is None:
            return (
                None,
                [],
                [
                    "`%s` is a %s, not a tensor, a tuple of tensors or a dict of keyword "
                    "tensors; it was ignored" % (EXAMPLE_INPUT_NAME, type(example).__name__)
                ],
            )
        return got[0], got[1], []
    inferred = infer_input(module)
    if inferred is None:
        return (
            None,
            [],
            [
                "No input shape: give inputShapes, or define a module-level `%s` tensor "
                "in the file." % EXAMPLE_INPUT_NAME
            ],
        )
    shape, dt, note, layer = inferred
    emb = layer if isinstance(layer, nn.Embedding) else None
    tensors = Inputs([make_tensor(shape, dt, device, emb)])
    spec = {"shape": shape, "dtype": dtype_name(dt), "source": "inferred", "note": note}
    return (
        tensors,
        [spec],
        [
            "Input shape %s was %s; set `%s` in the file or pass inputShapes if "
            "that is wrong." % (shape, note, EXAMPLE_INPUT_NAME)
        ],
    )
