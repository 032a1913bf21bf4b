"""One hierarchy of errors; the CLI turns each into one clear line and an exit code.

    MlopsError                      base of everything raised on purpose (exit 1)
    ├── SpecError                   specs are invalid; carries every Diagnostic (exit 9)
    ├── RevisionError               a git revision or repository cannot be read (exit 9)
    │   ├── MissingRevisionError    the revision is not in this clone (shallow clone, force-push)
    │   └── DirtyWorktreeError      the working tree has uncommitted changes that may not be applied
    ├── PlanError                   a plan file is malformed or made for another version
    │   └── StalePlanError          the plan was made against a different base state (exit 3)
    ├── StoreError                  the artifact store is unreachable, misconfigured or read-only
    │   ├── IntegrityError          a blob's content does not match its digest (exit 4)
    │   └── CorruptRecordError      a record in the store is not what it should be (names it and the fix)
    ├── RegistryError               a registry operation is impossible (unknown model, bad version)
    ├── GatesBlockedError           a promotion's gates failed or await an approval / soak time (exit 10)
    ├── EnvironmentBuildError       an environment could not be realised
    ├── PipelineError               a pipeline could not be started (failed *steps* are results, not errors)
    ├── PathError                   a path leads outside the repository, or onto what a step does not own
    ├── EvaluationError             a model version cannot be scored (no evaluation data, a bad CSV, not ONNX)
    ├── BatchError                  a batch endpoint cannot score its input (bad settings, unreadable input)
    ├── MonitorError                monitoring cannot compare an endpoint's inputs (no baseline, bad data) (exit 13)
    ├── LockError                   another run holds the lock
    ├── GitHubError                 a GitHub API call failed (status, method, path and GitHub's message)
    ├── DeliveryError               an event sink could not deliver an event (never escapes ``emit``)
    └── ServingError                a scoring server cannot start, or did not apply a config in time

Outcomes of actions (succeeded / failed / skipped / blocked / pending) are values, not exceptions:
exceptions mean "cannot go on".

Exit codes besides the ones above: 0 ok, 1 a failed action or a general error, 2 the plan has
changes (only with ``mlops plan --detailed-exitcode``, as Terraform), 5 registry, 6 environment build,
7 pipeline, 8 lock held, 11 deploy, 12 batch, 64 a command-line usage error, 70 an internal error (a bug: please report it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one spec file, located as precisely as we can."""

    file: str
    line: int
    column: int
    path: str  # JSON path of the offending field, e.g. "$.deployments[0].model"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"

    def github_annotation(self) -> str:
        """The same problem as a GitHub Actions workflow command."""
        return f"::error file={gh_property(self.file)},line={self.line},col={self.column}::" \
               f"{gh_data(f'{self.path}: {self.message}')}"


def gh_data(text: str) -> str:
    """``text`` escaped as the message of a GitHub Actions workflow command (as actions/toolkit does)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def gh_property(text: str) -> str:
    """``text`` escaped as a property (``file=...``) of a workflow command: a file name holding a
    newline would otherwise end the command and start one of its own (``::add-mask::``...)."""
    return gh_data(text).replace(":", "%3A").replace(",", "%2C")


class MlopsError(Exception):
    """Base of every error raised on purpose."""

    exit_code = 1


class SpecError(MlopsError):
    """The specs are invalid. Holds every diagnostic found, not just the first."""

    exit_code = 9

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        n = len(self.diagnostics)
        super().__init__(f"{n} error{'s' if n != 1 else ''} in specs")


class RevisionError(MlopsError):
    exit_code = 9


class DirtyWorktreeError(RevisionError):
    exit_code = 9


class MissingRevisionError(RevisionError):
    """A revision that is not in this clone: a shallow clone's missing history, or a commit that a
    force-push removed. ``rev`` is what was asked for; the message says how to get it."""

    exit_code = 9

    def __init__(self, message: str, rev: str):
        super().__init__(message)
        self.rev = rev


class PlanError(MlopsError):
    exit_code = 3


class StalePlanError(PlanError):
    exit_code = 3


class StoreError(MlopsError):
    exit_code = 4


class IntegrityError(StoreError):
    exit_code = 4


class CorruptRecordError(StoreError):
    """A store record (run, registry version, state...) cannot be read; the message names it and the way forward."""

    exit_code = 4


class RegistryError(MlopsError):
    exit_code = 5


class DeployError(MlopsError):
    """An endpoint cannot be deployed, read or removed: its model does not resolve, a target failed, a server
    did not start (the message carries the tail of its log)."""

    exit_code = 11


class GatesBlockedError(MlopsError):
    """A promotion that its stage's gates do not allow (yet): failed, or awaiting approval or soak time."""

    exit_code = 10


class EnvironmentBuildError(MlopsError):
    exit_code = 6


class PipelineError(MlopsError):
    exit_code = 7


class PathError(MlopsError):
    """A path a spec names escapes the repository, follows a symbolic link out of it, or names
    what mlops must never read or write (``.git``, ``.mlops``, a tracked file as an output)."""


class EvaluationError(MlopsError):
    """A model version cannot be scored on its held-out data: the model spec names none, the data is
    missing, too large or not a CSV of numbers, or the model is no ONNX model that takes it."""


class BatchError(MlopsError):
    """A batch endpoint cannot score its input: its settings, input, output or model are not usable (rows
    that fail are logged, not raised; too many of them make a failed run, not an error)."""

    exit_code = 12


class MonitorError(MlopsError):
    """Monitoring cannot compare an endpoint's inputs: no baseline, a bad monitoring setting, or a
    reference or current file that is missing, not in a supported format, or holds a column that cannot
    be used (the message names the file and the column)."""

    exit_code = 13


class LockError(MlopsError):
    exit_code = 8


class GitHubError(MlopsError):
    """A GitHub REST call failed: ``status`` (None when no answer came), ``method``, ``path`` and GitHub's
    own message. ``retryable``: a later attempt may succeed (5xx, rate limits, no answer). Never
    carries the token."""

    def __init__(self, message: str, *, status: int | None = None, method: str = "", path: str = "",
                 retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
        self.retryable = retryable


class DeliveryError(MlopsError):
    """An event sink could not deliver an event. ``retryable`` False: trying again cannot help (a 4xx
    answer, a sink misconfigured for good), so the event is dead at once instead of kept."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ServingError(MlopsError):
    """A scoring server's config is invalid, the server is not running, or it did not apply a
    config generation in time (the message names the config file or the server's directory)."""



