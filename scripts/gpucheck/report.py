"""Checks, their outcomes and the report. A check reports PASS or FAIL only from code that ran and
compared a figure against ground truth; anything it could not run is SKIP with the reason."""

import json
import platform
import sys
import time
import traceback

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
REPORT_VERSION = 1


class Skip(Exception):
    """Raised by a check that finds, once started, that it cannot run (no torchvision...)."""


class Outcome:
    def __init__(self):
        self.failures = []
        self.measured = {}
        self.notes = []
        self.compared = 0

    def expect(self, ok, what):
        """One comparison against ground truth; `what` says both figures."""
        self.compared += 1
        if not ok:
            self.failures.append(what)
        return ok

    def close(self, a, b, rel, what, abs_tol=0.0):
        ok = (
            a is not None
            and b is not None
            and abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_tol)
        )
        return self.expect(
            ok,
            "%s: %r vs %r (tolerance %g%%%s)"
            % (what, a, b, rel * 100, (", %g absolute" % abs_tol) if abs_tol else ""),
        )


class Check:
    def __init__(self, cid, section, title, fn, gpu=False, timing=False, cost_s=10):
        self.id = cid
        self.section = section
        self.title = title
        self.fn = fn
        # Needs a CUDA GPU; without one it is SKIP with the context's reason, never run.
        self.gpu = gpu
        # Compares times against a tolerance: on a loaded CPU box it may FAIL without a defect.
        self.timing = timing
        # Rough seconds on the GPU machine, for the budget.
        self.cost_s = cost_s


def run_checks(checks, ctx, deadline, log, on_row=None):
    results = []
    for c in checks:
        t0 = time.monotonic()
        row = {
            "id": c.id,
            "section": c.section,
            "title": c.title,
            "gpu": c.gpu,
            "timing": c.timing,
            "ran": False,
            "seconds": 0.0,
        }
        if c.gpu and not ctx.gpu:
            row.update(status=SKIP, reason=ctx.no_gpu_reason)
        elif time.monotonic() + c.cost_s > deadline:
            row.update(
                status=SKIP, reason="time budget spent (--budget-s); needs about %d s" % c.cost_s
            )
        else:
            log("%s %s ..." % (c.id, c.title))
            out = Outcome()
            try:
                c.fn(ctx, out)
                row["ran"] = True
                if out.failures:
                    row.update(status=FAIL, reason="; ".join(out.failures))
                elif out.compared == 0:
                    # Ran but compared nothing: not a pass.
                    row.update(status=FAIL, reason="the check compared nothing")
                else:
                    row.update(
                        status=PASS,
                        reason="%d comparison%s agree"
                        % (out.compared, "" if out.compared == 1 else "s"),
                    )
            except Skip as e:
                row.update(status=SKIP, reason=str(e))
            except Exception as e:  # a check that crashes is a FAIL with its cause, never a PASS
                row["ran"] = True
                row.update(
                    status=FAIL,
                    reason="%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""),
                    traceback=traceback.format_exc()[-4000:],
                )
            row["compared"] = out.compared
            row["measured"] = out.measured
            if out.notes:
                row["notes"] = out.notes
        row["seconds"] = round(time.monotonic() - t0, 2)
        results.append(row)
        if on_row is not None:
            on_row(results)
        log("  %s %s" % (row["status"], row.get("reason", "")))
    return results


def report_document(results, ctx, started, args, complete=True):
    counts = {s: sum(1 for r in results if r["status"] == s) for s in (PASS, FAIL, SKIP)}
    return {
        "reportVersion": REPORT_VERSION,
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "budgetSeconds": args.budget_s,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "executable": sys.executable,
        },
        "environment": ctx.environment(),
        "gpu": ctx.gpu,
        "noGpuReason": None if ctx.gpu else ctx.no_gpu_reason,
        "counts": counts,
        # False in the copy written after each check: a run killed from outside keeps what it did.
        "complete": complete,
        "checks": results,
    }


def table(results):
    w = max(len(r["id"]) for r in results)
    lines = ["%-4s  %-*s  %s" % ("", w, "check", "title / reason")]
    for r in results:
        lines.append("%-4s  %-*s  %s" % (r["status"], w, r["id"], r["title"]))
        if r.get("reason"):
            lines.append("%-4s  %-*s    %s" % ("", w, "", r["reason"][:300]))
    return "\n".join(lines)


def write_json(path, doc):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")
