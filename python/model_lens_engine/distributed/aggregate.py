"""Every rank's reports folded into one view of the job: plain data in, plain data out (no torch,
no sockets), so the view and the straggler finding can be tested from reports made by hand.

What a rank sends (rank.py): `rank/hello` {pid, host, localRank, worldSize, groupRank};
`train/progress` and `train/diagnosis` as a single-process run sends them; `rank/stats` {steps,
stepMs, breakdown, collectives: [{op, file, line, function, count, seconds, steadySeconds}]};
`rank/end` {state}. Each carries `rank`.
"""

import os
import statistics

from ..errors import location

# A rank whose busy time per step (step time less time waiting in collectives) exceeds the
# median of the others by this fraction and by MIN_STRAGGLER_MS is named a straggler.
STRAGGLER_FRACTION = 0.15
MIN_STRAGGLER_MS = 2.0
# Loss values kept per rank for the spread (the latest steps only).
MAX_SPREAD_STEPS = 64
PHASES = (
    ("dataMs", "data"),
    ("forwardMs", "forward"),
    ("backwardMs", "backward"),
    ("optimizerMs", "optimizer"),
    ("otherMs", "other"),
)
FINAL_STATES = ("done", "stopped", "failed")


class RankView:
    def __init__(self, rank):
        self.rank = rank
        self.hello = {}
        self.progress = None  # the latest train/progress
        self.diagnosis = None
        self.stats = None
        self.state = "starting"
        self.error = None
        self.failed_at = None  # order in which ranks failed: the first is the cause
        self.losses = {}  # step -> loss, the latest MAX_SPREAD_STEPS
        self.pending_loss = []  # rank 0: points not yet passed on
        self.warnings = []


class JobView:
    def __init__(self, world_size=None):
        self.world_size = world_size
        # The ranks this launch started (LOCAL_WORLD_SIZE): with several nodes, each node's
        # engine sees its own ranks only.
        self.local_size = None
        self.ranks = {}
        self._failures = 0
        # Failures counted when a stop was asked for: later ones are how the ranks stopped.
        self.stopped_after = None

    def rank(self, r):
        v = self.ranks.get(r)
        if v is None:
            v = self.ranks[r] = RankView(r)
        return v

    def on_message(self, method, params):
        """Folds one rank's notification; returns False for ones this view does not keep."""
        r = params.get("rank")
        if not isinstance(r, int):
            return False
        v = self.rank(r)
        if method == "rank/hello":
            v.hello = params
            ws = params.get("worldSize")
            if isinstance(ws, int) and ws > 0:
                self.world_size = ws
            lws = params.get("localWorldSize")
            if isinstance(lws, int) and lws > 0:
                self.local_size = lws
        elif method == "train/progress":
            v.progress = params
            v.state = params.get("state", v.state)
            for step, loss in params.get("loss") or []:
                v.losses[step] = loss
                if r == 0:
                    v.pending_loss.append([step, loss])
            if len(v.losses) > MAX_SPREAD_STEPS:
                for s in sorted(v.losses)[:-MAX_SPREAD_STEPS]:
                    del v.losses[s]
            for w in params.get("warnings") or []:
                if w not in v.warnings:
                    v.warnings.append(w)
            if params.get("error") and v.error is None:
                v.error = params["error"]
                self._failures += 1
                v.failed_at = self._failures
        elif method == "train/diagnosis":
            v.diagnosis = params
        elif method == "rank/stats":
            v.stats = params
        elif method == "rank/end":
            v.state = params.get("state", v.state)
        else:
            return False
        return True

    # ---- the job's state -------------------------------------------------------------------

    def stop_requested(self):
        if self.stopped_after is None:
            self.stopped_after = self._failures

    def first_failure(self):
        """The rank whose failure ended the job (failures after a stop was asked for are not)."""
        failed = [
            v
            for v in self.ranks.values()
            if v.failed_at is not None
            and (self.stopped_after is None or v.failed_at <= self.stopped_after)
        ]
        return min(failed, key=lambda v: v.failed_at) if failed else None

    def expected(self):
        return self.local_size or self.world_size or 0

    def all_ended(self):
        n = self.expected()
        return (
            n > 0
            and len(self.ranks) >= n
            and all(v.state in FINAL_STATES for v in self.ranks.values())
        )

    def loss_spread(self):
        """{step, min, max} over ranks at the latest step every rank reported a loss for."""
        views = list(self.ranks.values())
        if not views or len(views) < self.expected():
            return None
        common = set(views[0].losses)
        for v in views[1:]:
            common &= set(v.losses)
        if not common:
            return None
        step = max(common)
        vals = [v.losses[step] for v in views if v.losses[step] is not None]
        if not vals:
            return None
        return {"step": step, "min": min(vals), "max": max(vals)}

    def progress(self, run_id, state, error=None, warnings=None):
        """The job's train/progress: rank 0's step, epoch, rate and loss points (it is the rank
        whose loss a single-process run would show), every rank's step and latest loss, and the
        spread of the loss over ranks."""
        r0 = self.ranks.get(0)
        base = dict(r0.progress) if r0 is not None and r0.progress else {}
        p = {
            "runId": run_id,
            "state": state,
            "step": base.get("step", 0),
            "epoch": base.get("epoch"),
            "totalSteps": base.get("totalSteps"),
            "totalEpochs": base.get("totalEpochs"),
            "stepsPerSec": base.get("stepsPerSec"),
            "etaSec": base.get("etaSec"),
            "loss": [],
        }
        for k in ("lr", "training", "gradEnabled", "modelId"):
            if k in base:
                p[k] = base[k]
        if r0 is not None:
            p["loss"], r0.pending_loss = r0.pending_loss, []
        p["ranks"] = [self._rank_progress(v) for _, v in sorted(self.ranks.items())]
        p["worldSize"] = self.world_size
        spread = self.loss_spread()
        if spread is not None:
            p["lossSpread"] = spread
        if error:
            p["error"] = error
        if warnings:
            p["warnings"] = warnings
        return p

    def rank_state(self, v):
        """A rank whose collective failed because another rank had failed first was stopped by
        that failure; only the first failed rank is `failed`."""
        if v.state != "failed":
            return v.state
        if (
            self.stopped_after is not None
            and v.failed_at is not None
            and v.failed_at > self.stopped_after
        ):
            return "stopped"
        first = self.first_failure()
        return "stopped" if first is not None and first is not v else "failed"

    def _rank_progress(self, v):
        last = max(v.losses) if v.losses else None
        out = {
            "rank": v.rank,
            "state": self.rank_state(v),
            "step": (v.progress or {}).get("step", 0),
            "loss": v.losses[last] if last is not None else None,
        }
        if v.stats and v.stats.get("stepMs"):
            out["stepMs"] = v.stats["stepMs"]
        return out

    def warnings(self):
        """Rank 0's warnings as they are; another rank's only when rank 0 did not have it."""
        r0 = self.ranks.get(0)
        seen = list(r0.warnings) if r0 is not None else []
        out = list(seen)
        for _, v in sorted(self.ranks.items()):
            if v.rank != 0:
                out.extend("rank %d: %s" % (v.rank, w) for w in v.warnings if w not in seen)
        return out

    # ---- diagnosis -------------------------------------------------------------------------

    def rank_diagnosis(self, v):
        stats = v.stats or {}
        d = v.diagnosis or {}
        steps = stats.get("steps", d.get("steps", 0)) or 0
        per = max(steps - 1, 1)  # steady figures exclude the first step, as the breakdown does
        colls = []
        wait = 0.0
        for c in stats.get("collectives") or []:
            ms = c["steadySeconds"] * 1e3 / per if steps >= 2 else 0.0
            wait += ms
            item = {
                "op": c["op"],
                "count": c["count"],
                "totalMs": c["seconds"] * 1e3,
                "msPerStep": ms,
            }
            if c.get("file"):
                item["source"] = location(c["file"], c["line"], c.get("function"))
            colls.append(item)
        out = {
            "rank": v.rank,
            "state": self.rank_state(v),
            "steps": steps,
            "stepMs": stats.get("stepMs", d.get("stepMs")),
            "breakdown": stats.get("breakdown", d.get("breakdown")),
            "waitMsPerStep": wait,
            "collectives": colls,
        }
        for k in ("host", "pid", "localRank", "groupRank"):
            if v.hello.get(k) is not None:
                out[k] = v.hello[k]
        if stats.get("gpu"):
            out["gpu"] = stats["gpu"]
        return out

    def diagnosis(self, run_id):
        """Rank 0's diagnosis (steps, device, breakdown, its findings) with every rank's figures
        under `ranks`, and the job's own findings (the straggler, collective waits) first."""
        r0 = self.ranks.get(0)
        base = (
            dict(r0.diagnosis)
            if r0 is not None and r0.diagnosis
            else {
                "steps": 0,
                "device": "cpu",
                "batchSize": None,
                "stepMs": 0.0,
                "opsPerStep": None,
                "avgOpUs": None,
                "hostToDevice": {"count": 0, "bytes": 0},
                "deviceToHost": {"count": 0, "bytes": 0},
                "syncs": [],
                "breakdown": None,
                "findings": [],
            }
        )
        base.pop("rank", None)
        base["runId"] = run_id
        ranks = [self.rank_diagnosis(v) for _, v in sorted(self.ranks.items())]
        base["ranks"] = ranks
        base["findings"] = job_findings(ranks) + list(base.get("findings") or [])
        return base


def _busy(r):
    return (r["stepMs"] or 0.0) - r["waitMsPerStep"]


def _names(ranks):
    return ", ".join(str(r["rank"]) for r in ranks)


def _site_text(c):
    src = c.get("source")
    return "%s at %s:%d" % (c["op"], os.path.basename(src["file"]), src["line"]) if src else c["op"]


def job_findings(ranks):
    """The straggler finding, with numbers: which rank is slower per step than the others (busy
    time: step time less time waiting in collectives), in which phase, and how long the others
    wait for it and where. Without a straggler, the collective wait per step as information."""
    out = []
    timed = [r for r in ranks if r["stepMs"] and r["steps"] >= 2]
    if len(timed) >= 2:
        slow = max(timed, key=_busy)
        others = [r for r in timed if r is not slow]
        med = statistics.median(_busy(r) for r in others)
        if (
            med > 0
            and _busy(slow) > med * (1 + STRAGGLER_FRACTION)
            and _busy(slow) - med >= MIN_STRAGGLER_MS
        ):
            pct = (_busy(slow) / med - 1) * 100
            msg = (
                "rank %d is %.0f%% slower per step than the others "
                "(%.1f vs %.1f ms of work per step" % (slow["rank"], pct, _busy(slow), med)
            )
            phase = _slowest_phase(slow, others)
            if phase is not None:
                msg += "; %s %.1f ms more" % phase
            msg += ")"
            top = _top_site(others)
            if top is not None:
                wait = statistics.mean(_site_ms(r, top) for r in others)
                who = ("ranks %s wait" if len(others) > 1 else "rank %s waits") % _names(others)
                msg += "; %s %.1f ms per step in %s" % (who, wait, _site_text(top))
            f = {"severity": "warning", "message": msg + "."}
            if top is not None and top.get("source"):
                f["source"] = top["source"]
            out.append(f)
            return out
    for r in timed:
        if r["collectives"] and r["waitMsPerStep"] > 0:
            top = r["collectives"][0]
            out.append(
                {
                    "severity": "info",
                    "message": "rank %d spends %.2f ms per step (%.0f%% of its step) in "
                    "collectives, most in %s."
                    % (
                        r["rank"],
                        r["waitMsPerStep"],
                        100 * r["waitMsPerStep"] / r["stepMs"],
                        _site_text(top),
                    ),
                }
            )
    return out


def _slowest_phase(slow, others):
    b = slow.get("breakdown")
    obs = [r["breakdown"] for r in others if r.get("breakdown")]
    if not b or not obs:
        return None
    best = None
    for key, name in PHASES:
        diff = b[key] - statistics.median(o[key] for o in obs)
        if best is None or diff > best[1]:
            best = (name, diff)
    return best if best[1] > 0 else None


def _site_key(c):
    src = c.get("source") or {}
    return (c["op"], src.get("file"), src.get("line"))


def _site_ms(r, site):
    key = _site_key(site)
    return sum(c["msPerStep"] for c in r["collectives"] if _site_key(c) == key)


def _top_site(ranks):
    """The collective site where these ranks wait longest per step in total."""
    totals = {}
    first = {}
    for r in ranks:
        for c in r["collectives"]:
            k = _site_key(c)
            totals[k] = totals.get(k, 0.0) + c["msPerStep"]
            first.setdefault(k, c)
    if not totals:
        return None
    k = max(totals, key=totals.get)
    return first[k] if totals[k] > 0 else None
