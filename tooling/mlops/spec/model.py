"""Typed, immutable values for every spec kind.

The YAML files are validated against the JSON Schemas in ``schemas/`` first; these
dataclasses are what the rest of the framework works with. Paths are POSIX paths
relative to the repository root.

Reference syntax (used in step inputs and command arguments)::

    ${steps.STEP.outputs.NAME}   an output of another step of the same pipeline
    ${datasets.NAME}             the files of a Dataset asset
    ${inputs.NAME} ${outputs.NAME} ${params.NAME}   (command arguments only) this step's own values
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("Project", "Environment", "Dataset", "Pipeline", "Model", "Endpoint")

REF_RE = re.compile(r"\$\{([a-zA-Z_][\w.\-]*)\}")


@dataclass(frozen=True)
class Stage:
    name: str
    gates: tuple[dict[str, Any], ...] = ()
    description: str = ""
    auto: bool = False  # entered by every new version whose gates pass, without a pin


@dataclass(frozen=True)
class StoreConfig:
    """Where artifacts and registry records live. ``type`` is ``local``, ``s3`` or ``git``."""

    type: str = "local"
    path: str = ".mlops"
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""
    # git: the remote refs/mlops/ is pushed to; "" (not in mlops.yaml) is origin, and while the clone has
    # no origin the state stays in the clone, to be published once it has (store.gitlocal)
    remote: str = ""
    max_blob_mb: float = 50.0  # git: the largest blob it takes


@dataclass(frozen=True)
class TargetConfig:
    name: str
    type: str  # local | docker | kubernetes
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    name: str
    stages: tuple[Stage, ...]
    store: StoreConfig
    registry_backend: str = "store"  # store | git
    registry_remote: str = ""  # "": origin, as StoreConfig.remote
    targets: tuple[TargetConfig, ...] = ()
    default_target: str = "local"
    notifications: tuple[dict[str, Any], ...] = ()
    file: str = "mlops.yaml"


@dataclass(frozen=True)
class Environment:
    """A software environment. Its identity is the hash of what defines it (see ``identity()``).

    ``python`` is a pinned major.minor, or None for the interpreter that runs mlops.
    """

    name: str
    python: str | None = None
    requirements: tuple[str, ...] = ()
    lockfile: str | None = None
    base_image: str | None = None
    system_packages: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    system_site_packages: bool = False
    file: str = ""


@dataclass(frozen=True)
class Dataset:
    """A versioned data asset: a file or directory in the workspace, optionally pinned to a digest."""

    name: str
    path: str
    digest: str | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    file: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    command: tuple[str, ...]
    inputs: dict[str, str] = field(default_factory=dict)  # name -> path or ${steps..}/${datasets..}
    outputs: dict[str, str] = field(default_factory=dict)  # name -> path (relative to repo root)
    params: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None
    code: tuple[str, ...] = ()  # extra code files/dirs; python scripts in `command` are found automatically
    metrics: str | None = None  # name of an output holding a JSON object of metrics
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    secrets: tuple[str, ...] = ()  # names of host variables passed in at run time, masked in all output


@dataclass(frozen=True)
class Pipeline:
    name: str
    steps: tuple[Step, ...]
    environment: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    secrets: tuple[str, ...] = ()  # secrets every step gets (see Step.secrets)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def step_params(self, step: Step) -> dict[str, Any]:
        """Pipeline-level params overridden by the step's own."""
        return {**self.params, **step.params}

    def step_environment(self, step: Step) -> str | None:
        return step.environment or self.environment

    def step_secrets(self, step: Step) -> tuple[str, ...]:
        """The pipeline's secrets and the step's own, sorted."""
        return tuple(sorted({*self.secrets, *step.secrets}))


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files come from: a pipeline step output, or files in the repository."""

    pipeline: str | None = None
    artifact: str | None = None  # "STEP.OUTPUT"
    metrics: str | None = None  # "STEP.OUTPUT"
    files: tuple[str, ...] = ()


DATASET_REF_RE = re.compile(r"\$\{datasets\.([^}]*)\}")
STEP_OUTPUT_RE = re.compile(r"([^./${}]+)\.([^./${}]+)")


@dataclass(frozen=True)
class ModelEvaluation:
    """The held-out data mlops itself scores a model's versions on (metrics, confusion matrix,
    permutation importance, champion re-scoring). ``data`` is ``STEP.OUTPUT`` of the model's
    pipeline, ``${datasets.NAME}`` or a repository path: a CSV with a header row, numeric
    features and the ``label`` column."""

    data: str
    label: str
    task: str  # classification | regression
    repeats: int = 5  # permutation importance: shuffles per feature
    seed: int = 0

    def source(self, steps: Any) -> tuple[str, str, str]:
        """What ``data`` names (see ``data_source``)."""
        return data_source(self.data, steps)

    def step_shaped(self) -> bool:
        """Whether ``data`` has the shape of ``STEP.OUTPUT`` (it names one if STEP is a step of the pipeline)."""
        return STEP_OUTPUT_RE.fullmatch(self.data) is not None


def data_source(data: str, steps: Any) -> tuple[str, str, str]:
    """What a data reference names: ``("dataset", NAME, "")``, ``("step", STEP, OUTPUT)`` when it is
    ``STEP.OUTPUT`` and STEP is among ``steps`` (the pipeline's step names), else ``("path", data, "")``."""
    m = DATASET_REF_RE.fullmatch(data)
    if m is not None:
        return "dataset", m.group(1), ""
    m = STEP_OUTPUT_RE.fullmatch(data)
    if m is not None and m.group(1) in steps:
        return "step", m.group(1), m.group(2)
    return "path", data, ""


@dataclass(frozen=True)
class ModelMonitoring:
    """What live inputs of the model's versions are compared with: ``reference`` names the training
    data as ``evaluation.data`` names held-out data (None: found from the pipeline, see
    ``mlops.monitoring.baseline``); ``label`` is the column that is no feature."""

    reference: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Model:
    name: str
    flavor: str
    source: ModelSource
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)  # desired state: which version each stage holds
    file: str = ""
    evaluation: ModelEvaluation | None = None
    monitoring: ModelMonitoring = field(default_factory=ModelMonitoring)


@dataclass(frozen=True)
class ModelRef:
    """``NAME``, ``NAME@VERSION`` or ``NAME@STAGE``."""

    name: str
    version: int | None = None
    stage: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, _, sel = text.partition("@")
        if not sel:
            return cls(name)
        if sel.isdigit():
            return cls(name, version=int(sel))
        return cls(name, stage=sel)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.stage:
            return f"{self.name}@{self.stage}"
        return self.name


@dataclass(frozen=True)
class Deployment:
    name: str
    model: ModelRef
    environment: str | None = None
    instances: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # batching, resources, scoring module, ...


@dataclass(frozen=True)
class Endpoint:
    name: str
    type: str  # online | batch
    deployments: tuple[Deployment, ...]
    target: str | None = None
    traffic: dict[str, int] = field(default_factory=dict)
    mirror: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)  # {mode: key|none, secret: ENV_NAME}
    serving: dict[str, Any] = field(default_factory=dict)  # {port, host, workers, timeout_ms, max_request_mb}
    file: str = ""


@dataclass(frozen=True)
class Specs:
    """Every spec of a repository at one revision."""

    project: Project
    environments: dict[str, Environment] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
