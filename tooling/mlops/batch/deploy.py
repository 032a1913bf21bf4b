"""A batch endpoint's deploy action, and the one function the CLI and reconcile both call to score.

The deployment's ``model`` resolves to one registered version: ``MODEL@N`` is N, bare ``MODEL`` the latest,
``MODEL@STAGE`` the version the stage holds by the release audit trail (what the stage's pin became once
its gates passed: a pin whose promotion is blocked does not reach the endpoint), as online endpoints resolve
it. Its ``.onnx`` file is fetched from the store by digest (verified) into a temporary directory.

Reconcile scores the endpoint's input again only when the model version, the input's digest or the batch
settings changed since the last successful scoring, or the output is no longer what that scoring wrote;
otherwise the action is *skipped*. A run killed halfway resumes at its last completed mini-batch.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops.batch import records
from mlops.batch.job import BatchJob, job_for
from mlops.batch.run import InputFile, Outcome, Progress, file_sha256, opened_input, run
from mlops.errors import BatchError, CorruptRecordError, PathError, RegistryError
from mlops.registry.records import ModelVersion
from mlops.spec.model import Endpoint, Specs
from mlops.store.protocol import ArtifactStore

Echo = Callable[[str], None]


def resolve_model(endpoint: Endpoint, specs: Specs, store: ArtifactStore) -> tuple[ModelVersion, str]:
    """The version the batch endpoint's deployment names, and the sha256 of its ``.onnx`` file."""
    from mlops.registry.models import get_model

    where = f"{endpoint.file or endpoint.name}: $.deployments[0].model"
    if len(endpoint.deployments) != 1:
        raise BatchError(f"{endpoint.file or endpoint.name}: $.deployments: a batch endpoint has exactly one "
                         f"deployment (it has {len(endpoint.deployments)})")
    ref = endpoint.deployments[0].model
    version = ref.version
    try:
        if ref.stage is not None:
            version = _stage_version(store, specs, ref.name, ref.stage, where)
        mv = get_model(store, ref.name, version)
    except (RegistryError, CorruptRecordError) as e:
        raise BatchError(f"{where}: {ref}: {e}") from None
    onnx = [f for f in mv.files if f.path.lower().endswith(".onnx")]
    if len(onnx) != 1:
        raise BatchError(f"{where}: {mv.ref} has {len(onnx) or 'no'} .onnx file(s) "
                         f"({', '.join(f.path for f in mv.files)}); batch scoring runs exactly one ONNX model")
    return mv, onnx[0].digest


def _stage_version(store: ArtifactStore, specs: Specs, model: str, stage: str, where: str) -> int:
    from mlops.release.records import model_events, stage_holder

    if stage not in {s.name for s in specs.project.stages}:
        raise BatchError(f"{where}: {model}@{stage}: {specs.project.file} has no stage {stage!r}")
    held = stage_holder(model_events(store, model), stage)
    if held is None:
        pin = specs.models[model].stages.get(stage) if model in specs.models else None
        waits = f" (its pin, version {pin}, has not entered it yet)" if pin is not None else ""
        raise BatchError(f"{where}: {model}@{stage}: stage {stage} of {model} holds no version yet{waits}")
    return held


def score(job: BatchJob, mv: ModelVersion, model_sha256: str, store: ArtifactStore, source: InputFile,
          progress: Progress | None = None) -> Outcome:
    """Run ``job`` with ``mv``'s ONNX file (fetched from the store by digest, verified)."""
    with tempfile.TemporaryDirectory(prefix="mlops-batch-") as tmp:
        model_file = Path(tmp) / "model.onnx"
        store.get_file(model_sha256, model_file)
        return run(job, model_file, model_sha256, mv.ref, source, progress)


def settings_digest(job: BatchJob) -> str:
    return hashlib.sha256(json.dumps(job.settings(), sort_keys=True).encode()).hexdigest()


def record(store: ArtifactStore, job: BatchJob, mv: ModelVersion, model_sha256: str, source: InputFile,
           outcome: Outcome, by: str) -> None:
    """Remember a successful scoring of the spec's own input into its own output. When the version differs
    from the last scoring's, the model's release trail gets a ``deployed`` event (its deployment changed),
    so ``mlops audit ENDPOINT --at T`` and ``mlops history MODEL`` tell which version scored the endpoint."""
    from mlops.registry.lineage import utc_now
    from mlops.release.records import append_event

    last = records.last_scoring(store, job.endpoint)
    if last is None or (last.model, last.version) != (mv.name, mv.version):
        append_event(store, mv.name, "deployed", version=mv.version, stage=None, by=by or "unknown",
                     why=f"batch endpoint {job.endpoint} scored {job.input_name}",
                     evidence={"endpoint": job.endpoint, "deployment": job.deployment, "target": "batch",
                               "traffic": 100, "input": job.input_name, "input_digest": source.digest,
                               "rows": outcome.rows, "errors": outcome.errors})
    records.record_scoring(store, records.Scoring(
        job.endpoint, mv.name, mv.version, model_sha256, job.input_name, source.digest, job.output_name,
        outcome.output_digest or "", settings_digest(job), outcome.rows, outcome.errors, utc_now(), by))


def up_to_date(last: records.Scoring | None, job: BatchJob, model_sha256: str, input_digest: str) -> str | None:
    """Why the last scoring still stands (None when the input must be scored again)."""
    if last is None or last.model_sha256 != model_sha256 or last.input_digest != input_digest or \
            last.settings_digest != settings_digest(job) or last.output != job.output_name:
        return None
    try:
        if not job.output.is_file() or job.output.is_symlink() or file_sha256(job.output) != last.output_digest:
            return None
    except OSError:
        return None
    return f"{job.output_name} already holds the predictions of {last.model}@{last.version} for this input"


def apply_batch_endpoint(endpoint: Endpoint, specs: Specs, store: ArtifactStore, root: Path, echo: Echo,
                         by: str = "") -> tuple[str, str, dict[str, Any]]:
    """The deploy action of a batch endpoint: ``(status, message, details)``, status one of succeeded,
    skipped (the output is current) or failed (settings, input or model unusable, or too many bad rows).
    Only an unreachable or broken store raises."""
    try:
        job = job_for(endpoint, root)
        mv, sha = resolve_model(endpoint, specs, store)
        with opened_input(job) as source:
            details: dict[str, Any] = {"endpoint": endpoint.name, "model": mv.name, "version": mv.version,
                                       "input": job.input_name, "input_digest": source.digest,
                                       "output": job.output_name}
            why = up_to_date(records.last_scoring(store, endpoint.name), job, sha, source.digest)
            if why is not None:
                return "skipped", why, details
            echo(f"batch {endpoint.name}: scoring {job.input_name} with {mv.ref}")
            outcome = score(job, mv, sha, store, source)
            details.update(rows=outcome.rows, errors=outcome.errors, resumed_at=outcome.resumed_at,
                           seconds=round(outcome.seconds, 3))
            if outcome.status != "succeeded":
                return "failed", outcome.message, details
            record(store, job, mv, sha, source, outcome, by)
            details["output_digest"] = outcome.output_digest
            return "succeeded", outcome.message, details
    except (BatchError, PathError) as e:
        return "failed", str(e), {"endpoint": endpoint.name}

