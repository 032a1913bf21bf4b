"""``champion: {metrics: [...], min_delta: D, data: REF}``: beat the version the stage holds.

Both versions are scored by mlops on the same held-out data (the model spec's ``evaluation.data``, or
the gate's ``data``): the very same bytes, in the same run. A recorded evaluation is reused only when
it was made on those bytes; a champion whose records were made on other data (the held-out set
changed) is scored again. For each named metric the challenger must be better by at least
``min_delta``: ``challenger - champion >= min_delta``, or, for metrics where lower is better
(``log_loss``, ``rmse``, ``mae``, ``mse``, ``*_loss``, ``*_error``), ``champion - challenger >= min_delta``.
With no holder there is nothing to beat; the holder itself passes trivially.
"""

from __future__ import annotations

from typing import Any

from mlops.evaluation.metrics import lower_is_better
from mlops.gates.protocol import GateContext, GateResult, error, failed, passed
from mlops.release.evaluations import list_evaluations


def champion_gate(ctx: GateContext) -> GateResult:
    opts = ctx.options
    names = opts.get("metrics")
    min_delta = opts.get("min_delta", 0)
    ref = opts.get("data")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)) or \
            not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool):
        return error("champion", f"malformed champion gate {ctx.gate!r}: needs metrics (a list of names) and a "
                                 "numeric min_delta")
    v = ctx.version.version
    holder = ctx.holder
    if holder is None:
        return passed("champion", f"{ctx.stage} holds no version: no champion to beat", champion=None)
    if holder.version == v:
        return passed("champion", f"v{v} already holds {ctx.stage}", champion=v)
    earlier = ctx.evaluation.cached(holder.version, ref) is None and \
        bool(list_evaluations(ctx.store, ctx.model.name, holder.version))
    champ = ctx.evaluation(holder, ref)
    chall = ctx.evaluation(ctx.version, ref)
    compared: dict[str, dict[str, Any]] = {}
    parts = []
    for name in names:
        c, h = chall.metrics.get(name), champ.metrics.get(name)
        if c is None or h is None:
            compared[name] = {"challenger": c, "champion": h, "passed": False}
            parts.append(f"{name}: not computed by the evaluation (it has {', '.join(sorted(chall.metrics))})")
            continue
        lower = lower_is_better(name)
        delta = (h - c) if lower else (c - h)  # the improvement: positive is better either way
        ok = delta >= min_delta
        compared[name] = {"challenger": c, "champion": h, "improvement": delta, "lower_is_better": lower, "passed": ok}
        parts.append(f"{name} {c:.6g} vs champion v{holder.version} {h:.6g}: improvement {delta:+.6g} "
                     f"{'>=' if ok else '<'} min_delta {min_delta:g}" + (" (lower is better)" if lower else ""))
    evidence = {"champion": holder.version, "challenger": v, "min_delta": min_delta, "metrics": compared,
                "data": chall.data, "data_digest": chall.data_digest, "rows": chall.rows,
                "champion_rescored": earlier, "champion_evaluated_at": champ.at, "challenger_evaluated_at": chall.at}
    summary = "; ".join(parts) + (" (champion re-scored: its earlier evaluations used other data or settings)" if earlier else "")
    if all(m["passed"] for m in compared.values()):
        return passed("champion", summary, **evidence)
    return failed("champion", summary, **evidence)
