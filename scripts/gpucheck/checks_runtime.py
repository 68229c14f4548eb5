"""Sections 5 and 6: real device errors (mismatch, CUDA OOM) and hooks during a training run."""

import math
import os

from .engine import RpcError
from .report import Check
from .truth import MIB

OOM_SLACK_MIB = 64.0
HOOK_OVERHEAD_MAX = 1.10
HOOK_EVENTS_MIN = 3
# (steps timed, batch repeat of the 150 iris rows, hidden width) on each device.
HOOK_RUN = {"cpu": (300, 1, 32), "cuda": (2000, 64, 512)}
WARMUP_STEPS = 20
UNTIL_STOPPED = 10**9
HISTOGRAM_EVERY_STEPS = 50


def _still_answers(eng, out, label):
    info = eng.request("system/info")
    out.expect("memory" in info, "%s: system/info did not answer after the error" % label)
    return info


def _mismatch(ctx, out, path, dev):
    eng = ctx.engine("cpu")
    _, end, _ = eng.train(path, [])
    err = end.get("error") or {}
    out.measured.update(state=end["state"], error=err)
    out.expect(end["state"] == "failed", "the run ended %s, not failed" % end["state"])
    out.expect(
        err.get("kind") == "deviceMismatch",
        "error kind %r, not deviceMismatch: %s" % (err.get("kind"), err.get("message")),
    )
    out.expect(
        err.get("layer") == "fc1",
        "error names layer %r, not fc1: %s" % (err.get("layer"), err.get("message")),
    )
    out.expect(
        dev in (err.get("message") or "") and "cpu" in (err.get("message") or ""),
        "the message does not say both devices (%s, cpu): %s" % (dev, err.get("message")),
    )
    out.expect("Traceback" not in (err.get("message") or ""), "the message is a stack dump")
    _still_answers(eng, out, "mismatch")


def check_mismatch_cpu(ctx, out):
    """The repo's fixture: a buffer on `meta` (a GPU's stand-in) in layer `head`, inspected."""
    eng = ctx.engine("cpu")
    path = os.path.join(ctx.repo, "test", "fixtures", "torch", "device_mismatch.py")
    caught = None
    try:
        mid = eng.request("model/load", {"file": path})["modelId"]
        eng.request("model/summary", {"modelId": mid})
    except RpcError as e:
        caught = e
    out.expect(caught is not None, "no error from a model with a meta buffer")
    if caught is None:
        return
    msg = str(caught)
    out.measured.update(kind=caught.kind, message=msg, layer=caught.data.get("layer"))
    out.expect(
        caught.kind == "deviceMismatch",
        "error kind %r, not deviceMismatch: %s" % (caught.kind, msg),
    )
    out.expect(
        caught.data.get("layer") == "head",
        "error names layer %r, not head: %s" % (caught.data.get("layer"), msg),
    )
    out.expect("meta" in msg and "cpu" in msg, "the message does not say both devices: %s" % msg)
    out.expect("Traceback" not in msg, "the message is a stack dump")
    _still_answers(eng, out, "mismatch")


def check_mismatch_cuda(ctx, out):
    _mismatch(ctx, out, ctx.work.mismatch_train("cuda"), "cuda")


def check_oom(ctx, out):
    eng = ctx.engine("cuda")
    before = eng.request("system/info")["torch"]["devices"][0]
    total = ctx.torch.cuda.get_device_properties(0).total_memory
    path = ctx.work.oom_model(total)
    caught = None
    try:
        mid = eng.request("model/load", {"file": path})["modelId"]
        eng.request("model/summary", {"modelId": mid})
    except RpcError as e:
        caught = e
    out.expect(caught is not None, "asking for %.0f GiB raised no error" % (total * 2 / 2**30))
    if caught is None:
        return
    msg = str(caught)
    out.measured.update(
        kind=caught.kind, message=msg, layer=caught.data.get("layer"), hint=caught.data.get("hint")
    )
    out.expect("out of memory" in msg.lower(), "the message does not say out of memory: %s" % msg)
    out.expect(
        caught.data.get("layer") == "huge" or "huge" in msg,
        "the error does not name layer `huge`: %s" % msg,
    )
    out.expect("Traceback" not in msg, "the message is a stack dump")
    after = _still_answers(eng, out, "OOM")["torch"]["devices"][0]
    out.measured.update(
        allocatedBeforeMiB=before["allocatedBytes"] / MIB,
        allocatedAfterMiB=after["allocatedBytes"] / MIB,
    )
    # The failed allocation never happened; what could stay is the forward's tensors held by the
    # exception's frames. (The previous model may have been replaced and freed: only growth counts.)
    grown = (after["allocatedBytes"] - before["allocatedBytes"]) / MIB
    out.expect(grown <= OOM_SLACK_MIB, "%.0f MiB more allocated after the OOM than before" % grown)
    # And it still runs a model on the GPU.
    iris = os.path.join(ctx.repo, "examples", "iris_mlp.py")
    mid = eng.request("model/load", {"file": iris})["modelId"]
    r = eng.request("model/forward", {"modelId": mid, "steps": 2})
    out.expect(r["steps"] == 2, "a forward after the OOM failed: %r" % r)


def _step(eng, run_id):
    return max((p["step"] for p in eng.progress(run_id)), default=0)


def _window(eng, run_id, steps, until=lambda: True):
    """ms per step over the next `steps` optimizer steps of a running run, from two diagnoses:
    stepMs × (steps − 1) is the wall time since the first step, so their difference is exact."""
    d0 = eng.request("train/diagnose", {"runId": run_id})
    eng.wait_for(lambda: _step(eng, run_id) >= d0["steps"] + steps and until())
    d1 = eng.request("train/diagnose", {"runId": run_id})
    wall = d1["stepMs"] * (d1["steps"] - 1) - d0["stepMs"] * (d0["steps"] - 1)
    return wall / (d1["steps"] - d0["steps"]), d1


def _hooked_run(ctx, out, dev):
    """The same training twice, each stopped once measured: without a hook, then with a forward
    hook on fc1; histograms every 50 steps in both. The runs last as long as the measurement
    needs, however fast the machine."""
    eng = ctx.engine("cpu")
    path, _ = ctx.work.iris_item()
    window, repeat, hidden = HOOK_RUN[dev]
    args = [dev, UNTIL_STOPPED, repeat, 0, hidden]
    run_plain = eng.start_run(path, args, HISTOGRAM_EVERY_STEPS)
    eng.wait_for(lambda: _step(eng, run_plain) >= WARMUP_STEPS)
    plain_ms, plain = _window(eng, run_plain, window)
    eng.request("train/stop", {"runId": run_plain})
    run_id = eng.start_run(path, args, HISTOGRAM_EVERY_STEPS)
    eng.wait_for(lambda: any(p.get("modelId") for p in eng.progress(run_id)))
    hook = eng.request(
        "hook/attach", {"path": "fc1", "kind": "forward", "intervalMs": 50, "histogramBins": 16}
    )["hookId"]

    def events():
        return [e for e in eng.notes("hook/event") if e["hookId"] == hook]

    def hists():
        return [h for h in eng.notes("train/histograms") if h["runId"] == run_id]

    eng.wait_for(lambda: events() and _step(eng, run_id) >= WARMUP_STEPS)
    hooked_ms, hooked = _window(
        eng, run_id, window, lambda: len(events()) >= HOOK_EVENTS_MIN and len(hists()) >= 2
    )
    eng.request("hook/detach", {"hookId": hook})
    eng.request("train/stop", {"runId": run_id})
    events, hists = events(), hists()
    ratio = hooked_ms / plain_ms if plain_ms else None
    out.measured.update(
        plainStepMs=plain_ms,
        hookedStepMs=hooked_ms,
        windowSteps=window,
        overhead=ratio,
        events=len(events),
        histogramNotifications=len(hists),
        deviceToHostPerStep={
            "plain": plain["deviceToHost"]["count"] / max(plain["steps"], 1),
            "hooked": hooked["deviceToHost"]["count"] / max(hooked["steps"], 1),
        },
    )
    states = [eng.progress(r)[-1]["state"] for r in (run_plain, run_id)]
    out.expect(states == ["stopped", "stopped"], "runs ended %s, not stopped" % states)
    out.expect(
        len(events) >= HOOK_EVENTS_MIN,
        "%d hook events, expected ≥ %d" % (len(events), HOOK_EVENTS_MIN),
    )
    for ev in events[:HOOK_EVENTS_MIN]:
        out.expect(
            ev["tensor"]["device"].startswith(dev),
            "hook tensor on %r, the run is on %s" % (ev["tensor"]["device"], dev),
        )
        out.expect(
            ev["tensor"]["shape"] == [150 * repeat, hidden], "hook shape %r" % ev["tensor"]["shape"]
        )
        st = ev["stats"]
        out.expect(
            all(
                isinstance(st.get(k), (int, float)) and math.isfinite(st[k])
                for k in ("mean", "std", "min", "max")
            ),
            "hook stats not finite numbers: %r" % st,
        )
        h = ev.get("histogram")
        numel = 150 * repeat * hidden
        # A big tensor's histogram may be counted over a sample and scaled to numel.
        out.expect(
            h is not None and abs(sum(h["counts"]) - numel) <= 0.01 * numel,
            "hook histogram sums to %r, tensor has %d values" % (h and sum(h["counts"]), numel),
        )
    out.expect(len(hists) >= 2, "%d train/histograms notifications" % len(hists))
    # Periodic snapshots are taken right after an optimizer step, where every gradient exists.
    # (The last one comes at Stop, which may fall anywhere in a step: not checked here.)
    for h in hists[:2]:
        missing = [p["name"] for p in h["params"] if not p.get("grad")]
        out.expect(not missing, "histograms at step %d lack gradients of %s" % (h["step"], missing))
    return ratio


def check_hooks_cpu(ctx, out):
    _hooked_run(ctx, out, "cpu")


def check_hooks_cuda(ctx, out):
    ratio = _hooked_run(ctx, out, "cuda")
    out.expect(
        ratio is not None and ratio <= HOOK_OVERHEAD_MAX,
        "one live hook costs %.2f× (target ≤ %.2f×)" % (ratio or 0, HOOK_OVERHEAD_MAX),
    )


SECTION_5 = [
    Check(
        "5.1",
        "errors",
        "device mismatch (meta buffer stand-in): names `head` and both devices; engine answers",
        check_mismatch_cpu,
        cost_s=10,
    ),
    Check(
        "5.2",
        "errors",
        "real device mismatch (model on cuda, batch on cpu)",
        check_mismatch_cuda,
        gpu=True,
        cost_s=15,
    ),
    Check(
        "5.3",
        "errors",
        "real CUDA OOM: names the layer, memory released, engine still runs models",
        check_oom,
        gpu=True,
        cost_s=15,
    ),
]
SECTION_6 = [
    Check(
        "6.1",
        "hooks",
        "CPU training: hook events + histograms arrive with stats; overhead measured",
        check_hooks_cpu,
        cost_s=20,
    ),
    Check(
        "6.2",
        "hooks",
        "CUDA training: hook stats on the device, overhead of one live hook ≤ 1.10×",
        check_hooks_cuda,
        gpu=True,
        timing=True,
        cost_s=30,
    ),
]
