"""The PyTorch engine's request handlers (the counterpart of src/engine/tfjs/tfjsEngine.ts).
Transport, dispatch and process lifetime are in dispatch.py."""

import os
import sys
import time

from . import ENGINE_VERSION, PROTOCOL_VERSION, dispatch
from . import protocol as P
from .errors import (
    ENVIRONMENT,
    INTERNAL,
    USER_ERROR,
    EngineFault,
    bad_request,
    not_found,
    user_fault,
)

# Requests that would run the model on the RPC thread: refused for a model a run is training
# (and model/load is refused during any run).
RUN_BUSY_METHODS = (P.MODEL_SUMMARY, P.MODEL_FORWARD, P.PROFILE_RUN, P.TENSOR_INSPECT)


def _major(v):
    return str(v or "").split(".")[0]


class Server(dispatch.Dispatcher):
    def __init__(self, conn, torch_error=None, watchdog=None):
        super().__init__(conn, watchdog)
        self.torch_error = torch_error
        self.initialized = False
        self.trusted = False
        self.backend = "cpu"
        self.device = "cpu"
        self.backend_notes = []
        self.lm = None
        self.model_counter = 0
        self.hooks = None
        self.run = None
        # A job a handler leaves for the main thread (a training script), run after its response.
        self.main_job = None
        self.handlers = {
            P.ENGINE_INITIALIZE: self.initialize,
            P.ENGINE_SHUTDOWN: self.shutdown,
            P.MODEL_LOAD: self.model_load,
            P.MODEL_TREE: self.model_tree,
            P.MODEL_SUMMARY: self.model_summary,
            P.MODEL_FORWARD: self.model_forward,
            P.TENSOR_INSPECT: self.tensor_inspect,
            P.PROFILE_RUN: self.profile_run,
            P.HOOK_ATTACH: self.hook_attach,
            P.HOOK_DETACH: self.hook_detach,
            P.TRAIN_START: self.train_start,
            P.TRAIN_STOP: self.train_stop,
            P.TRAIN_DIAGNOSE: self.train_diagnose,
            P.SYSTEM_INFO: self.system_info,
        }

    def end_main_job(self):
        if self.run is not None and self.run.active():
            self.run.stop()

    def refusal(self, method, params):
        if (
            self.run is not None
            and self.run.active()
            and isinstance(params, dict)
            and (
                method == P.MODEL_LOAD
                or (
                    method in RUN_BUSY_METHODS
                    and self.run.lm is not None
                    and params.get("modelId") in (None, self.run.lm.model_id)
                )
            )
        ):
            # model/load would change the running script's working directory.
            what = self.run.lm.name if self.run.lm is not None else "the engine"
            return (
                USER_ERROR,
                "%s is busy training (run %s); stop the run first" % (what, self.run.run_id),
                {"kind": "badRequest", "got": method},
            )
        return None

    def _need_trust(self):
        if not self.initialized:
            raise EngineFault(ENVIRONMENT, "badRequest", "Send engine/initialize first")
        if self.torch_error:
            raise EngineFault(
                ENVIRONMENT,
                "runtimeMissing",
                "PyTorch cannot be imported by %s: %s" % (sys.executable, self.torch_error),
                hint="Choose an interpreter where `import torch` works (modelLens.pythonPath / --python).",
            )
        if not self.trusted:
            raise EngineFault(
                ENVIRONMENT,
                "untrusted",
                "The workspace is not trusted, so the engine runs no user code.",
                hint="Trust the workspace (Workspaces: Manage Workspace Trust) to load models.",
            )

    def _model(self, params, need_id=True):
        self._need_trust()
        lm = self.lm
        mid = params.get("modelId")
        if lm is None:
            raise not_found("notLoaded", "No model is loaded; send model/load first", got=mid)
        if need_id and mid is not None and mid != lm.model_id:
            raise not_found(
                "notLoaded",
                "Model %r is not loaded (the current model is %r; loading replaces the previous one)"
                % (mid, lm.model_id),
                got=mid,
                expected=lm.model_id,
            )
        return lm

    # ---- engine --------------------------------------------------------------------------

    def initialize(self, params):
        if _major(params.get("protocolVersion")) != _major(PROTOCOL_VERSION):
            raise EngineFault(
                ENVIRONMENT,
                "unsupported",
                "Protocol %s is not supported; this engine speaks %s"
                % (params.get("protocolVersion"), PROTOCOL_VERSION),
                expected=PROTOCOL_VERSION,
                got=str(params.get("protocolVersion")),
            )
        self.trusted = bool(params.get("trusted"))
        runtimes = [{"name": "python", "version": "%d.%d.%d" % sys.version_info[:3]}]
        capabilities = {
            "tree": True,
            "summary": True,
            "tensorInspect": True,
            "profile": True,
            "trace": True,
            "hooks": list(P.HOOK_KINDS),
            "rootHooks": True,
            "train": True,
            "histograms": True,
            "strides": "real",
            "backwardTimings": True,
        }
        if self.torch_error:
            self.initialized = True
            return {
                "protocolVersion": PROTOCOL_VERSION,
                "engine": {
                    "kind": "pytorch",
                    "version": ENGINE_VERSION,
                    "runtimes": runtimes,
                    "backend": "none",
                    "backendNotes": ["torch cannot be imported: %s" % self.torch_error],
                    "device": "none",
                    "capabilities": dict(
                        capabilities,
                        tree=False,
                        summary=False,
                        tensorInspect=False,
                        profile=False,
                        trace=False,
                        hooks=[],
                        rootHooks=False,
                        histograms=False,
                        backwardTimings=False,
                    ),
                    "pid": os.getpid(),
                    "executable": sys.executable,
                },
            }
        import torch

        runtimes.append({"name": "torch", "version": torch.__version__})
        try:
            import torchvision

            runtimes.append({"name": "torchvision", "version": torchvision.__version__})
        except Exception:
            pass
        self.backend, self.device, self.backend_notes = _pick_backend(params.get("backend"))
        cwd = params.get("cwd")
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
        from .hooks import HookManager

        self.hooks = HookManager(self.conn.notify)
        self.initialized = True
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "engine": {
                "kind": "pytorch",
                "version": ENGINE_VERSION,
                "runtimes": runtimes,
                "backend": self.backend,
                "backendNotes": self.backend_notes,
                "device": self.device,
                "capabilities": capabilities,
                "pid": os.getpid(),
                "executable": sys.executable,
            },
        }

    def shutdown(self, params):
        if self.run is not None and self.run.active():
            self.run.stop()
        if self.hooks is not None:
            self.hooks.detach(all_hooks=True)
        return None

    def system_info(self, params):
        from .system import system_info

        return system_info()

    # ---- training ------------------------------------------------------------------------

    def train_start(self, params):
        self._need_trust()
        if params.get("distributed") is not None:
            from .distributed.job import start_distributed_run

            return start_distributed_run(self, params)
        from .training.run import start_run

        return start_run(self, params)

    def train_stop(self, params):
        from .training.run import find_run

        run = find_run(self, params)
        if not run.active():
            return {"stopped": False}
        if not run.stop():
            raise EngineFault(
                INTERNAL,
                "timeout",
                "Run %s did not stop: the script is stuck in code that cannot be "
                "interrupted (a long C call or sleep)." % run.run_id,
            )
        return {"stopped": True}

    def train_diagnose(self, params):
        from .training.run import find_run

        return find_run(self, params).diagnosis()

    # ---- model ---------------------------------------------------------------------------

    def model_load(self, params):
        self._need_trust()
        from . import loader

        file = params.get("file")
        if not isinstance(file, str) or not file:
            raise bad_request("model/load needs `file`")
        # A failed load leaves the previous model (and its hooks) as they were.
        from .counting import type_name
        from .inputs import requests_of

        lm = loader.load(
            file,
            params.get("model"),
            requests_of(params),
            self.device,
            move_to_device=self.device != "cpu",
            device=params.get("device"),
        )
        if self.lm is not None:
            self.hooks.detach(all_hooks=True)
            self.lm = None
        self.model_counter += 1
        lm.model_id = "m%d" % self.model_counter
        self.lm = lm
        result = {
            "modelId": lm.model_id,
            "file": lm.file,
            "name": lm.name,
            "type": type_name(lm.module),
            "candidates": lm.candidates,
            "inputs": lm.input_specs,
            "warnings": lm.warnings,
        }
        if lm.location:
            result["location"] = lm.location
        if lm.meta:
            result["meta"] = True
        for w in lm.warnings:
            self.log("warn", w)
        return result

    def model_tree(self, params):
        lm = self._model(params)
        from .tree import build_tree

        return build_tree(lm)

    def _inputs_for(self, lm, params):
        from .inputs import from_request, requests_of

        requests = requests_of(params)
        if requests:
            return from_request(lm.module, requests, lm.device)
        return lm.inputs, lm.input_specs

    def model_summary(self, params):
        lm = self._model(params)
        from .summary import run_summary

        inputs, specs = self._inputs_for(lm, params)
        return run_summary(lm, inputs, specs, list(lm.warnings))

    def _call(self, lm, inputs, paths, what):
        from .inputs import call
        from .loader import classify_forward_error

        try:
            return call(lm.module, inputs)
        except BaseException as e:  # noqa: B902
            if isinstance(e, KeyboardInterrupt):
                raise
            raise classify_forward_error(e, lm, paths, what)

    def model_forward(self, params):
        lm = self._model(params)
        import torch

        from .profiling import median_ms
        from .summary import _tensors_of, forward_inputs_or_fail
        from .tree import canonical_paths

        steps = _int(params.get("steps"), 1, 1, 100000, "steps")
        backward = bool(params.get("backward"))
        forward_inputs_or_fail(lm, lm.inputs)
        paths = canonical_paths(lm.module)
        times = []
        shapes = []
        try:
            for _ in range(steps):
                self.check_cancel()
                t0 = time.perf_counter()
                with torch.set_grad_enabled(backward):
                    out = self._call(lm, lm.inputs, paths, "running forward")
                    outs = _tensors_of(out)
                    if backward:
                        loss = _scalar_loss(outs)
                        if loss is None:
                            raise user_fault(
                                "userCodeError",
                                "backward needs a floating-point output that requires grad; %s has none"
                                % lm.name,
                            )
                        try:
                            loss.backward()
                        except RuntimeError as e:
                            raise user_fault(
                                "userCodeError",
                                "backward failed: %s" % str(e).split("\n")[0],
                                layer="",
                            )
                times.append(time.perf_counter() - t0)
                shapes = [list(t.shape) for t in outs]
                self.hooks.flush()
        finally:
            if backward:
                for p in lm.module.parameters():
                    p.grad = None
            self.hooks.flush()
        return {"steps": steps, "outputShapes": shapes, "stepMs": median_ms(times)}

    # ---- tensors -------------------------------------------------------------------------

    def tensor_inspect(self, params):
        lm = self._model(params)
        from .tensors import DEFAULT_HISTOGRAM_BINS, histogram, tensor_info, tensor_stats
        from .tree import module_paths, named_tensor_groups, named_tensors

        target = params.get("target")
        if not isinstance(target, dict) or "kind" not in target:
            raise bad_request("tensor/inspect needs target {kind, ...}")
        kind = target["kind"]
        if kind in ("parameter", "buffer"):
            name = target.get("name")
            t = None
            for canon, _, tensor, aliases, _, _ in named_tensor_groups(
                lm.module, "_parameters" if kind == "parameter" else "_buffers"
            ):
                if name == canon or name in aliases:
                    t, name = tensor, canon
                    break
            if t is None:
                raise not_found(
                    "unknownPath", "The model has no %s named %r" % (kind, name), got=name
                )
        elif kind == "output":
            path = target.get("path", "")
            index = int(target.get("index") or 0)
            canon = None
            for mid, ps in module_paths(lm.module).items():
                if path in ps:
                    canon = ps[0]
            if canon is None:
                raise not_found(
                    "unknownPath", "The model has no module at path %r" % path, layer=path
                )
            name = "output:%s" % canon if index == 0 else "output:%s#%d" % (canon, index)
            if name not in lm.last_outputs:
                from .summary import run_summary

                run_summary(lm, lm.inputs, lm.input_specs, [])
            t = lm.last_outputs.get(name)
            if t is None:
                raise not_found(
                    "unknownPath",
                    "%s produced no output tensor %d in the last forward pass (it did not run, or its output is not a tensor)"
                    % (canon or "(root)", index),
                    layer=canon,
                )
            name = "output:%s" % canon if index == 0 else name
        elif kind == "input":
            index = int(target.get("index") or 0)
            if index < 0 or index >= len(lm.inputs):
                raise not_found(
                    "unknownPath",
                    "There is no input %d (the model has %d)" % (index, len(lm.inputs)),
                )
            t = lm.inputs[index]
            name = "input:%d" % index
        else:
            raise bad_request("target.kind must be parameter, buffer, output or input")
        named = named_tensors(lm)
        result = {"name": name, "tensor": tensor_info(t, name, named)}
        if params.get("stats") and t.device.type == "meta":
            raise user_fault(
                "unsupported",
                "%s is a meta tensor (the model was built on the meta "
                "device): it has a shape but no values for statistics." % name,
            )
        if params.get("stats"):
            result["stats"] = tensor_stats(t)
            result["histogram"] = histogram(
                t, params.get("histogramBins") or DEFAULT_HISTOGRAM_BINS
            )
        return result

    # ---- profiling -----------------------------------------------------------------------

    def profile_run(self, params):
        lm = self._model(params)
        if lm.meta:
            raise user_fault(
                "unsupported",
                "%s is built on the meta device (no weights, no values): "
                "there is nothing to time. Profile it on a real device." % lm.name,
            )
        import torch

        from . import profiling as P
        from .summary import _tensors_of, forward_inputs_or_fail
        from .tree import canonical_paths

        steps = _int(params.get("steps"), P.DEFAULT_PROFILE_STEPS, 1, P.MAX_PROFILE_STEPS, "steps")
        warmup = _int(
            params.get("warmup"), P.DEFAULT_WARMUP_STEPS, 0, P.MAX_PROFILE_STEPS, "warmup"
        )
        mode = params.get("mode") or "forward"
        if mode not in ("forward", "train"):
            raise bad_request("mode must be forward or train")
        trace_file = params.get("traceFile")
        forward_inputs_or_fail(lm, lm.inputs)
        train = mode == "train"
        root = lm.module
        paths = canonical_paths(root)
        warnings = []
        cuda = lm.device.type == "cuda"
        op_trace = [] if trace_file else None
        mod_trace = [] if trace_file else None
        modes = [(m, m.training) for m in root.modules()]
        timer = (
            P.OpTimer(record_shapes=True, trace=op_trace, cuda_events=cuda) if P.OpTimer else None
        )
        if timer is None:
            warnings.append(
                "This torch has no TorchDispatchMode: per-op timings are missing, module timings only."
            )
        if train:
            warnings.append(
                "train mode times forward + backward of the outputs' sum; the engine does not know the model's optimizer, so there is no optimizer step."
            )
        times = []
        t_origin = time.perf_counter()

        def one_step():
            with torch.set_grad_enabled(train):
                out = self._call(lm, lm.inputs, paths, "profiling")
                if train:
                    loss = _scalar_loss(_tensors_of(out))
                    if loss is not None:
                        if timer is not None:
                            timer.phase = "backward"
                        try:
                            loss.backward()
                        except RuntimeError as e:
                            raise user_fault(
                                "userCodeError", "backward failed: %s" % str(e).split("\n")[0]
                            )
                        finally:
                            if timer is not None:
                                timer.phase = "forward"

        try:
            root.train(train)
            with P.ModuleTimer(root, paths, mod_trace, backward=train, cuda_events=cuda) as mt:
                # Warm-up steps run under both timers (first calls, first-seen op groups), whose
                # counts are then reset: the tables cover the timed steps only.
                for i in range(warmup + steps):
                    if i == warmup:
                        mt.reset()
                        if timer is not None:
                            timer.reset()
                        times = []
                    self.check_cancel()
                    t0 = time.perf_counter()
                    if timer is not None:
                        with timer:
                            one_step()
                    else:
                        one_step()
                    if cuda:
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                    if train:
                        for p in root.parameters():
                            p.grad = None
            if cuda:
                mt.collect_cuda()
                if timer is not None:
                    timer.collect_cuda()
        finally:
            for m, t in modes:
                m.training = t
            for p in root.parameters():
                p.grad = None
        result = {
            "ops": timer.op_stats() if timer is not None else [],
            "modules": mt.module_timings(steps),
            "stepMs": P.median_ms(times),
            "steps": steps,
            "method": (
                ("TorchDispatchMode + cuda events" if cuda else "TorchDispatchMode")
                if timer is not None
                else "module hooks"
            )
            + (
                "; %d warm-up step%s excluded" % (warmup, "" if warmup == 1 else "s")
                if warmup
                else "; no warm-up"
            ),
            "warnings": warnings,
        }
        if trace_file:
            P.write_chrome_trace(trace_file, op_trace or [], mod_trace or [], paths, t_origin)
            result["traceFile"] = trace_file
        return result

    # ---- hooks ---------------------------------------------------------------------------

    def hook_attach(self, params):
        if (
            params.get("modelId") is None
            and self.run is not None
            and self.run.active()
            and hasattr(self.run, "hook_attach")
        ):
            return self.run.hook_attach(params)  # a distributed run: the ranks' models
        if params.get("modelId") is None and self.run is not None and self.run.active():
            if self.run.lm is None:
                raise not_found(
                    "notLoaded",
                    "Run %s has not called its model yet; attach again once progress has a modelId"
                    % self.run.run_id,
                )
            params = dict(params, modelId=self.run.lm.model_id)
        lm = self._model(params)
        path = params.get("path")
        if not isinstance(path, str):
            raise bad_request('hook/attach needs `path` ("" for the root module)')
        hid = self.hooks.attach(
            lm, path, params.get("kind"), params.get("intervalMs"), params.get("histogramBins")
        )
        return {"hookId": hid}

    def hook_detach(self, params):
        if self.run is not None and hasattr(self.run, "owns_hook") and self.run.owns_hook(params):
            return self.run.hook_detach(params)
        if self.hooks is None:
            return {"detached": 0, "remaining": 0}
        detached, remaining = self.hooks.detach(params.get("hookId"), bool(params.get("all")))
        return {"detached": detached, "remaining": remaining}


def _int(value, default, lo, hi, name):
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or int(value) != value
        or not lo <= value <= hi
    ):
        raise bad_request("%s must be an integer in [%d, %d], got %r" % (name, lo, hi, value))
    return int(value)


def _scalar_loss(outs):
    loss = None
    for t in outs:
        if t.is_floating_point() and t.requires_grad:
            s = t.float().sum()
            loss = s if loss is None else loss + s
    return loss


def _pick_backend(requested):
    import torch

    req = (requested or "auto").strip().lower()
    notes = []
    cuda_ok = torch.cuda.is_available()
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    why_no_cuda = (
        "torch was built without CUDA"
        if torch.version.cuda is None
        else "no CUDA device is visible"
    )
    if req == "auto":
        if cuda_ok:
            return "cuda", "cuda:0", ["cuda: %s" % torch.cuda.get_device_name(0)]
        notes.append("cuda: not available (%s)" % why_no_cuda)
        if mps_ok:
            return "mps", "mps", notes
        notes.append("mps: not available")
        return "cpu", "cpu", notes
    if req.startswith("cuda"):
        if not cuda_ok:
            raise EngineFault(
                ENVIRONMENT,
                "unsupported",
                "Backend %s requested but CUDA is not available (%s)" % (req, why_no_cuda),
            )
        idx = int(req.split(":")[1]) if ":" in req else 0
        if idx >= torch.cuda.device_count():
            raise EngineFault(
                ENVIRONMENT,
                "unsupported",
                "No CUDA device %d (there are %d)" % (idx, torch.cuda.device_count()),
            )
        return "cuda", "cuda:%d" % idx, ["requested %s" % req]
    if req == "mps":
        if not mps_ok:
            raise EngineFault(
                ENVIRONMENT, "unsupported", "Backend mps requested but MPS is not available"
            )
        return "mps", "mps", ["requested mps"]
    if req == "cpu":
        return "cpu", "cpu", ["requested cpu"]
    raise bad_request("backend must be auto, cpu, cuda, cuda:N or mps; got %r" % requested)


def _import_torch():
    try:
        import torch  # noqa: F401 - fail early, and answer initialize with the reason
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    return None


def _make_server(conn, watchdog, torch_error, import_s):
    server = Server(conn, torch_error, watchdog)
    if torch_error is None:
        server.log(
            "info",
            "PyTorch engine %s: torch %s imported in %.1f s by %s"
            % (ENGINE_VERSION, sys.modules["torch"].__version__, import_s, sys.executable),
        )
    return server


def main():
    dispatch.main(_make_server, _import_torch)
