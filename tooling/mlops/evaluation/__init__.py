"""Evaluation: mlops scores model versions itself, with onnxruntime, on the held-out data the model spec
names (``evaluation: {data, label, task}``), and keeps an immutable record of each scoring.

    evaluate_version(store, model_spec, version, root) -> Evaluation   # metrics, confusion, importance
    Evaluator(store, model_spec, root)(version)                        # several versions, one data file
    score_model(path, csv_bytes, label=..., task=...) -> Scores        # an ONNX file on a CSV, no store
    save_evaluation / load_evaluation                                  # the records

Modules: ``data`` (where the data comes from, bounded reads, CSV parsing), ``onnxmodel`` (running the
model), ``metrics`` (scikit-learn's metrics in numpy), ``importance`` (permutation importance),
``evaluate`` (the above together). The records themselves are ``mlops.release.evaluations``.
"""

from mlops.evaluation.evaluate import Evaluator, Scores, evaluate_version, score_model
from mlops.release.evaluations import Evaluation, load_evaluation, save_evaluation

__all__ = ["Evaluation", "Evaluator", "Scores", "evaluate_version", "load_evaluation", "save_evaluation",
           "score_model"]
