"""Module tree, parameters and buffers with shared instances and tied weights shown once."""

import inspect

from .counting import counts, is_lazy, is_scripted, numel, type_name
from .errors import location
from .tensors import NamedTensors, tensor_info


def module_paths(root):
    """{id(module): [paths...]} in named_modules(remove_duplicate=False) order, first = canonical."""
    paths = {}
    for path, m in root.named_modules(remove_duplicate=False):
        paths.setdefault(id(m), []).append(path)
    return paths


def canonical_paths(root):
    return {mid: ps[0] for mid, ps in module_paths(root).items()}


def _definition(cls, cache):
    if cls in cache:
        return cache[cls]
    loc = None
    try:
        f = inspect.getsourcefile(cls)
        _, line = inspect.getsourcelines(cls)
        if f:
            loc = location(f, line, cls.__name__)
    except (TypeError, OSError):
        pass
    cache[cls] = loc
    return loc


def _count(params):
    total = trainable = 0
    seen = set()
    for p in params:
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += numel(p)
        if p.requires_grad:
            trainable += numel(p)
    return total, trainable


def module_param_counts(m):
    """(own, total, trainable) with each shared parameter counted once."""
    own = sum(numel(p) for p in {id(p): p for p in m.parameters(recurse=False)}.values())
    total, trainable = _count(m.parameters())
    return own, total, trainable


def build_nodes(root, recorder=None, root_location=None, wrapper=None):
    all_paths = module_paths(root)
    canon = {mid: ps[0] for mid, ps in all_paths.items()}
    objs = {}
    by_path = {}
    for path, m in root.named_modules(remove_duplicate=False):
        objs.setdefault(id(m), m)
        by_path[path] = m
    parent_of = {}
    children_of = {}
    for path, m in root.named_modules():
        kids = []
        for name, c in m.named_children():
            kids.append(canon[id(c)])
            parent_of.setdefault(id(c), (m, name, path))
        children_of[id(m)] = kids
    def_cache = {}
    nodes = []
    for path, m in root.named_modules():
        own, total, trainable = module_param_counts(m)
        name = path.rsplit(".", 1)[-1] if path else ""
        parent = None
        source = {}
        d = _definition(type(m), def_cache)
        if d:
            source["definition"] = d
        if path:
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            pm = objs.get(id(m))
            if recorder is not None:
                pinfo = parent_of.get(id(m))
                # The registration under the canonical path's own parent is what this node shows.
                par = by_path[parent]
                loc = recorder.creation(par, name, pm)
                if loc is None and pinfo is not None:
                    loc = recorder.creation(pinfo[0], pinfo[1], pm)
                if loc:
                    source["creation"] = loc
        elif root_location:
            source["creation"] = root_location
        kids = children_of.get(id(m), [])
        node = {
            "path": path,
            "name": name,
            "type": type_name(m),
            "depth": 0 if not path else path.count(".") + 1,
            "parent": parent,
            "children": kids,
            "aliases": all_paths[id(m)][1:],
            "training": bool(m.training),
            "ownParams": own,
            "totalParams": total,
            "trainableParams": trainable,
            "frozen": total > 0 and trainable == 0,
            "isLeaf": len(kids) == 0,
        }
        c = counts(m)
        if c["effective"] != c["stored"]:
            node["effectiveParams"] = c["effective"]  # pruned: the mask's ones
        if c["packed"]:
            node["packedParams"] = c["packed"]
        if is_scripted(m):
            node["scripted"] = True
        if not path and wrapper:
            node["wrapper"] = wrapper
        if source:
            node["source"] = source
        nodes.append(node)
    return nodes


def named_tensor_groups(root, attr):
    """[(canonical name, owning module path, tensor, [alias names])] for `_parameters` or
    `_buffers`, walking modules with remove_duplicate=False (1.13 has no
    named_parameters(remove_duplicate=False)) and grouping by object identity."""
    order = []
    groups = {}
    for mpath, m in root.named_modules(remove_duplicate=False):
        for key, t in getattr(m, attr).items():
            if t is None:
                continue
            full = (mpath + "." + key) if mpath else key
            g = groups.get(id(t))
            if g is None:
                g = groups[id(t)] = [full, mpath, t, [], m, key]
                order.append(id(t))
            elif full != g[0] and full not in g[3]:
                g[3].append(full)
    return [groups[i] for i in order]


def named_tensors(lm):
    """Every named tensor of a loaded model: parameters, buffers, inputs, recorded outputs."""
    named = NamedTensors()
    for name, _, t, _, _, _ in named_tensor_groups(lm.module, "_parameters"):
        if not is_lazy(t):
            named.add(name, t)
    for name, _, t, _, _, _ in named_tensor_groups(lm.module, "_buffers"):
        named.add(name, t)
    for i, t in enumerate(lm.inputs):
        named.add("input:%d" % i, t)
    for key, t in lm.last_outputs.items():
        named.add(key, t)
    return named


def build_tree(lm):
    from .loader import materialize_lazy

    materialize_lazy(lm)  # lazy modules have no parameter shapes before a forward pass
    root = lm.module
    named = named_tensors(lm)
    index = named.index()
    params = []
    for name, mpath, p, aliases, _, _ in named_tensor_groups(root, "_parameters"):
        if is_lazy(p):
            continue  # no shape until a forward pass materializes it (loader.materialize_lazy)
        params.append(
            {
                "name": name,
                "module": mpath,
                "tensor": tensor_info(p, name, named, index),
                "requiresGrad": bool(p.requires_grad),
                "aliases": aliases,
            }
        )
    buffers = []
    for name, mpath, b, aliases, owner, key in named_tensor_groups(root, "_buffers"):
        buffers.append(
            {
                "name": name,
                "module": mpath,
                "tensor": tensor_info(b, name, named, index),
                "persistent": key not in getattr(owner, "_non_persistent_buffers_set", set()),
                "aliases": aliases,
            }
        )
    return {
        "modules": build_nodes(root, lm.recorder, lm.location, getattr(lm, "wrapper", None)),
        "parameters": params,
        "buffers": buffers,
    }
