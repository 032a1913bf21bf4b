"""Gates: what a model version must pass to enter a stage (``mlops.yaml`` ``stages[].gates``).

    report = evaluate_gates(store, project, model_spec, version, stage, root)   # -> GateReport
    GATES["latency"](ctx)                                                       # one gate -> GateResult

One module per kind (``metric``, ``champion``, ``latency``, ``signature``, ``approval``, ``soak``)
plus the implicit ``order`` gate, always first: a stage is entered only from the stage before it.
The protocol (``Gate``, ``GateContext``, ``GateResult``, ``GateReport``) is in ``protocol``.
"""

from mlops.gates.evaluate import context, evaluate_gates, run_gate
from mlops.gates.kinds import GATES, gate_kind
from mlops.gates.protocol import Gate, GateContext, GateReport, GateResult

__all__ = ["GATES", "Gate", "GateContext", "GateReport", "GateResult", "context", "evaluate_gates", "gate_kind",
           "run_gate"]
