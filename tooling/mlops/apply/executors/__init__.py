"""One executor per action kind."""

from __future__ import annotations

from mlops.apply.executors.deploy import deploy
from mlops.apply.executors.environment import build_environment
from mlops.apply.executors.pipeline import run_pipeline
from mlops.apply.executors.prune import prune
from mlops.apply.executors.registry import register_dataset, register_model
from mlops.apply.executors.release import evaluate_gates, promote, propose_promotion
from mlops.apply.protocol import Executor

EXECUTORS: dict[str, Executor] = {
    "register_dataset": register_dataset,
    "build_environment": build_environment,
    "run_pipeline": run_pipeline,
    "register_model": register_model,
    "evaluate_gates": evaluate_gates,
    "promote": promote,
    "propose_promotion": propose_promotion,
    "deploy": deploy,
    "prune": prune,
}
