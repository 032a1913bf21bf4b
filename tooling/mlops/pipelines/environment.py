"""What a pipeline step needs from an environment, and the host fallback.

The environments plug-in realises Environment specs into objects with exactly these attributes;
the pipelines plug-in must not import it, so the contract is this Protocol.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

from mlops.host import host_identity


class StepEnvironment(Protocol):
    """A realised environment a step runs in.

    A step whose ``argv[0]`` is ``python``/``python3`` runs with ``python``; ``bin_dir`` is
    prepended to ``PATH``; ``variables`` are added to the step's environment; ``identity`` (the
    hash of what defines the environment) is part of every step cache key.
    """

    @property
    def identity(self) -> str: ...

    @property
    def python(self) -> str: ...

    @property
    def bin_dir(self) -> str: ...

    @property
    def variables(self) -> dict[str, str]: ...


class HostEnvironment:
    """The interpreter running ``mlops`` itself: for steps that name no environment (and tests).

    Its identity names the interpreter's exact version and the packages visible to it (see
    ``mlops.host``), so installing or upgrading a package reruns the steps that use the host.
    """

    def __init__(self) -> None:
        self.python = sys.executable
        self.bin_dir = os.path.dirname(sys.executable)
        self.variables: dict[str, str] = {}
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        if self._identity is None:  # computed on first use: runs whose steps all have environments skip it
            self._identity = host_identity()
        return self._identity
