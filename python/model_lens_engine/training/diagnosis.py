"""train/diagnosis as pure functions over a run's Counters: no torch, no run, no script, so
every finding can be unit-tested from counters made by hand (python/tests/test_diagnosis.py)."""

import linecache
import os
import re

from ..errors import location

MAX_FINDING_SYNC_SITES = 5
# Data loading above this share of a step is a finding.
DATA_BOUND_FRACTION = 0.3
MAX_EXPR_CHARS = 60


def diagnose(c, run_id, device, now):
    """The train/diagnosis message. `c` is a Counters, `device` the device the model's
    parameters are on ("cpu", "cuda:0", ...), `now` a perf_counter time for a run still going."""
    steps = c.steps
    on_cpu = device.split(":")[0] == "cpu"
    step_s = None
    breakdown = None
    snap = c.snap
    if snap is not None and steps >= 2 and c.t_last_step is not None:
        n = steps - 1
        wall = c.t_last_step - snap[0]
        step_s = wall / n
        data = (c.t_data - snap[1]) / n
        fwd_n = n if c.fwd_every_step else c.fwd_steps - snap[5]
        fwd = (c.t_fwd - snap[2]) / fwd_n if fwd_n > 0 else 0.0
        bwd = (c.t_bwd - snap[3]) / n
        opt = (c.t_opt - snap[4]) / n
        breakdown = {
            "dataMs": data * 1e3,
            "forwardMs": fwd * 1e3,
            "backwardMs": bwd * 1e3,
            "optimizerMs": opt * 1e3,
            "otherMs": max(0.0, step_s - data - fwd - bwd - opt) * 1e3,
        }
    elif steps == 1 and c.t_script is not None and c.t_last_step is not None:
        step_s = c.t_last_step - c.t_script
    with c.lock:
        sync_items = sorted(c.syncs.items(), key=lambda kv: -kv[1][0])
    syncs = []
    for (kind, file, line), (count, secs, func, _, _) in sync_items:
        s = {"kind": kind, "count": count, "totalMs": secs * 1e3}
        if file:
            s["source"] = location(file, line, func)
        syncs.append(s)
    ops_per_step = c.op_count / c.op_steps if c.op_steps else None
    # The step's wall time shared over its ops: timing each op inside the op counter would add
    # the counter's own cost (and a cold first sample) to every op, so the figures would not add
    # up to the step time.
    avg_op_us = step_s / ops_per_step * 1e6 if ops_per_step and step_s else None
    findings = list(c.device_findings)
    total_s = (c.t_last_step or now) - (c.t_script or now)
    findings.extend(
        _findings(
            c, device, on_cpu, step_s, breakdown, sync_items, ops_per_step, avg_op_us, total_s
        )
    )
    return {
        "runId": run_id,
        "steps": steps,
        "device": device,
        "batchSize": c.batch_size,
        "stepMs": (step_s or 0.0) * 1e3,
        "opsPerStep": ops_per_step,
        "avgOpUs": avg_op_us,
        "hostToDevice": {"count": c.h2d[0], "bytes": c.h2d[1]},
        "deviceToHost": {"count": c.d2h[0], "bytes": c.d2h[1]},
        "syncs": syncs,
        "breakdown": breakdown,
        "findings": findings,
    }


def _sync_frequency(count, first_step, last_step):
    if count == 1:
        return "once"
    if last_step > first_step:
        every = (last_step - first_step) / (count - 1)
        if every >= 1.5:
            return "every %d steps" % round(every)
        per = count / (last_step - first_step + 1)
        return "every step" if per < 1.5 else "%.0f times per step" % per
    return "%d times" % count


def _findings(c, dev, on_cpu, step_s, breakdown, sync_items, ops_per_step, avg_op_us, total_s):
    steps = c.steps
    out = []
    if steps == 0:
        out.append(
            {
                "severity": "warning",
                "message": "No optimizer step was seen, so nothing is "
                "per step: the script never called step() on a torch.optim optimizer.",
            }
        )
    for (kind, file, line), (count, secs, func, first, last) in sync_items[:MAX_FINDING_SYNC_SITES]:
        what = sync_expr(kind, file, line)
        where = (" at %s:%d" % (os.path.basename(file), line)) if file else ""
        msg = "%s%s forces a device sync %s" % (what, where, _sync_frequency(count, first, last))
        sev = "info"
        if on_cpu:
            msg += " (free here: on CPU there is no device to wait for)"
        else:
            share = secs / total_s * 100 if total_s > 0 else 0.0
            msg += ": %.1f ms waiting in total, %.0f%% of the run" % (secs * 1e3, share)
            if share >= 5:
                sev = "warning"
        f = {"severity": sev, "message": msg + "."}
        if file:
            f["source"] = location(file, line, func)
        out.append(f)
    if on_cpu:
        n_syncs = sum(v[0] for _, v in sync_items)
        n_copies = c.h2d[0] + c.d2h[0]
        out.append(
            {
                "severity": "info",
                "message": "Syncs and copies cost nothing on CPU (no "
                "device): %s and %s were seen."
                % (
                    _count(n_syncs, "sync point"),
                    _count(n_copies, "host↔device copy", "host↔device copies"),
                ),
            }
        )
    elif steps > 0:
        if c.h2d[0]:
            out.append(
                {
                    "severity": "info",
                    "message": "%.1f host→device copies per step, %s per "
                    "step." % (c.h2d[0] / steps, format_bytes(c.h2d[1] / steps)),
                }
            )
        if c.d2h[0]:
            out.append(
                {
                    "severity": "info",
                    "message": "%.1f device→host copies per step, %s per "
                    "step." % (c.d2h[0] / steps, format_bytes(c.d2h[1] / steps)),
                }
            )
    if breakdown is not None and step_s:
        ms = step_s * 1e3
        out.append(
            {
                "severity": "info",
                "message": "Per step (wall clock, mean of steps 2–%d; "
                "step 1 is warm-up and excluded): %.2f ms = data %.2f + forward %.2f + "
                "backward %.2f + optimizer %.2f + other %.2f ms."
                % (
                    steps,
                    ms,
                    breakdown["dataMs"],
                    breakdown["forwardMs"],
                    breakdown["backwardMs"],
                    breakdown["optimizerMs"],
                    breakdown["otherMs"],
                ),
            }
        )
        frac = breakdown["dataMs"] / ms if ms > 0 else 0
        if frac >= DATA_BOUND_FRACTION:
            out.append(
                {
                    "severity": "warning",
                    "message": data_advice(c.loader, dev, frac, breakdown["dataMs"], ms),
                }
            )
    if c.loader is not None:
        lf = c.loader
        out.append(
            {
                "severity": "info",
                "message": "DataLoader: %s%s, pin_memory=%s%s."
                % (
                    _count(lf["workers"], "worker"),
                    " (persistent)" if lf["persistent"] and lf["workers"] else "",
                    lf["pinMemory"],
                    ", %s" % _count(lf["rows"], "row") if lf["rows"] is not None else "",
                ),
            }
        )
    if c.batch_size is not None:
        out.append({"severity": "info", "message": "Batch size %d on %s." % (c.batch_size, dev)})
    if ops_per_step is not None and avg_op_us is not None:
        msg = (
            "About %.0f ops per step (counted over %d sampled step%s): %.2f ms per step is "
            "%.1f µs per op on average."
            % (ops_per_step, c.op_steps, "" if c.op_steps == 1 else "s", step_s * 1e3, avg_op_us)
        )
        if avg_op_us < 20:
            msg += (
                " Ops this small are dominated by per-op overhead; a larger batch would use"
                " the hardware better."
            )
        out.append({"severity": "info", "message": msg})
    return out


def data_advice(loader, dev, frac, data_ms, step_ms):
    """What to do about a step that waits for data, from what the loader is and the device the
    model is on: pin_memory only speeds copies to a CUDA device, and more workers do not help
    when the workers are the cost."""
    msg = (
        "Waiting for data takes %.0f%% of each step (%.2f of %.2f ms, starting the loader's "
        "workers included)." % (frac * 100, data_ms, step_ms)
    )
    cuda = dev.split(":")[0] == "cuda"
    pin = cuda and loader is not None and not loader["pinMemory"]
    if loader is None:
        return msg
    if loader["workers"] == 0:
        msg += (
            " Batches are prepared in the training process (num_workers=0): num_workers > 0 "
            "would prepare them while the step runs"
        )
        msg += ", and pin_memory=True would speed the copies to %s." % dev if pin else "."
        return msg
    rows = " of %d rows" % loader["rows"] if loader["rows"] is not None else ""
    msg += " The loader already has %s: every batch crosses a process boundary" % _count(
        loader["workers"], "worker"
    )
    if not loader["persistent"]:
        msg += " and the workers are started again every epoch"
    msg += (
        ", which for a small dataset%s can cost more than it saves. Compare with "
        "num_workers=0%s" % (rows, "" if loader["persistent"] else " or persistent_workers=True")
    )
    msg += "; pin_memory=True would speed the copies to %s." % dev if pin else "."
    return msg


def _count(n, one, many=None):
    return "%d %s" % (n, one if n == 1 else (many or one + "s"))


def format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return "%.0f %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0


_SYNC_METHOD = {"item": "item", "tolist": "tolist", "numpy": "numpy", "cpu": "cpu"}


def sync_expr(kind, file, line):
    """loss.item() when the line shows it, else the generic .item(). Plain text: the panel and
    the CLI show messages as they are, so Markdown backticks would be shown literally."""
    text = linecache.getline(file, line).strip() if file else ""
    meth = _SYNC_METHOD.get(kind)
    if meth:
        m = re.search(r"([A-Za-z_][\w\.]*(?:\[[^\[\]]*\])?(?:\([^()]*\))?)\.%s\(\)" % meth, text)
        if m and len(m.group(0)) <= MAX_EXPR_CHARS:
            return m.group(0)
        return ".%s()" % meth
    if kind == "print":
        return "printing a tensor"
    return "converting a tensor to a Python number"
