"""``latency: {p50_ms, p95_ms, batch_size, runs}``: time per request with onnxruntime.

The version's own model, on the CPU with one intra-op thread, is fed seeded random inputs of its own
signature (each input's dtype; a dynamic first dimension is ``batch_size``, other dynamic dimensions
1). After a warm-up, ``runs`` requests are timed one by one; the gate compares their median (p50) and
95th percentile (p95), in milliseconds, with the limits given (a limit left out is not checked).
"""

from __future__ import annotations

import time
from typing import Any

from mlops.errors import EvaluationError
from mlops.gates.protocol import GateContext, GateResult, error, failed, passed

SEED = 0
_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
           "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
           "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
           "tensor(uint64)": "uint64", "tensor(bool)": "bool", "tensor(string)": "str"}


def latency_gate(ctx: GateContext) -> GateResult:
    from mlops.evaluation.onnxmodel import session, version_file

    opts = ctx.options
    batch, runs = opts.get("batch_size", 1), opts.get("runs", 200)
    limits = {k: opts[k] for k in ("p50_ms", "p95_ms") if k in opts}
    if not (_count(batch) and _count(runs) and all(_positive(x) for x in limits.values())):
        return error("latency", f"malformed latency gate {ctx.gate!r}: batch_size and runs must be positive "
                                "integers, p50_ms and p95_ms positive numbers")
    with version_file(ctx.store, ctx.version) as path:
        sess = session(path, threads=1)
        feeds, shapes = random_inputs(sess.get_inputs(), batch)
        warmup = min(20, runs)
        times = measure(sess, feeds, warmup, runs)
    p50, p95 = _percentile(times, 50), _percentile(times, 95)
    measured = {"p50_ms": p50, "p95_ms": p95}
    evidence = {**measured, "mean_ms": sum(times) / len(times), "max_ms": max(times), "min_ms": min(times),
                "runs": runs, "warmup": warmup, "batch_size": batch, "intra_op_threads": 1, "inputs": shapes,
                "limits": limits}
    over = [f"{k[:3]} {measured[k]:.3g} ms > {limit:g} ms" for k, limit in limits.items() if measured[k] > limit]
    shown = f"p50 {p50:.3g} ms, p95 {p95:.3g} ms at batch {batch} over {runs} runs"
    if over:
        return failed("latency", f"{'; '.join(over)} ({shown})", **evidence)
    checked = ", ".join(f"{k[:3]} <= {limit:g} ms" for k, limit in limits.items()) or "no limit set"
    return passed("latency", f"{shown} ({checked})", **evidence)


def random_inputs(inputs: Any, batch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seeded random values for each input, and the shape and dtype each got."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    feeds, shapes = {}, {}
    for i in inputs:
        if i.type not in _DTYPES:
            raise EvaluationError(f"input {i.name!r} is {i.type}: the latency gate feeds tensors only")
        dims = list(i.shape or [])
        shape = [d if isinstance(d, int) and d > 0 else (batch if n == 0 else 1) for n, d in enumerate(dims)]
        dtype = _DTYPES[i.type]
        if dtype == "str":
            value: Any = np.full(shape, "x", dtype=object)
        elif dtype == "bool":
            value = rng.random(shape) < 0.5
        elif dtype.startswith(("int", "uint")):
            value = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            value = rng.standard_normal(shape).astype(dtype)
        feeds[i.name] = value
        shapes[i.name] = {"dtype": i.type, "shape": shape}
    return feeds, shapes


def measure(sess: Any, feeds: dict[str, Any], warmup: int, runs: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls, after ``warmup`` untimed ones."""
    try:
        for _ in range(warmup):
            sess.run(None, feeds)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - start) * 1000.0)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise EvaluationError(f"onnxruntime failed to run the model on random inputs: {str(e)[:300]}") from None
    return times


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
