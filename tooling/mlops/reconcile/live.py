"""Read live state: the reconciler's state record and what the registry already holds."""

from __future__ import annotations

import os
from pathlib import Path

from mlops.plan.live import LiveState
from mlops.spec.model import Specs
from mlops.store.protocol import ArtifactStore


def read_live(store: ArtifactStore, root: Path | None = None, specs: Specs | None = None) -> LiveState:
    """The state record and registry; with ``root`` and ``specs`` also which endpoints drifted (their targets'
    live state, read cheaply)."""
    from mlops.apply.state import read_state
    from mlops.registry.models import list_models
    from mlops.release.records import all_stage_holders

    state = read_state(store)
    names = frozenset(list_models(store))
    holders = all_stage_holders(store)
    drift: dict[str, str] = {}
    if root is not None and specs is not None and any(e.type == "online" for e in specs.endpoints.values()):
        from mlops.deploy.drift import endpoint_drift

        drift = endpoint_drift(root, specs, store, holders)
    return LiveState(serial=state.serial, last_applied_commit=state.last_applied_commit, registered_models=names,
                     store_url=store.url, outstanding=state.outstanding, stage_holders=holders,
                     endpoint_drift=drift)


def head_commit(root: Path) -> str | None:
    """The commit the working tree sits on (None outside git or before the first commit)."""
    import git

    try:
        return git.Repo(root).head.commit.hexsha
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError, ValueError):
        return None


def actor(root: Path) -> str:
    """Who is applying: the GitHub actor in Actions, else the git identity, else the OS user."""
    if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_ACTOR"):
        return f"{os.environ['GITHUB_ACTOR']} (github actions run {os.environ.get('GITHUB_RUN_ID', '?')})"
    try:
        import git

        reader = git.Repo(root).config_reader()
        return f"{reader.get_value('user', 'name')} <{reader.get_value('user', 'email')}>"
    except Exception:  # noqa: BLE001 - any failure just means "no git identity"
        import getpass

        return getpass.getuser()
