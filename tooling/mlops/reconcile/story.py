"""The reconcile story, in one place:

    specs(base), specs(head) --load+validate--> asset graphs --diff--> ChangeSet
    ChangeSet + live state --plan--> Plan --apply--> executors --> ApplyReport (+ new state serial)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.errors import StalePlanError
from mlops.graph.compare import Comparison, compare, read_side
from mlops.plan.build import make_plan
from mlops.plan.live import LiveState
from mlops.plan.model import Plan
from mlops.reconcile.live import actor, head_commit, read_live
from mlops.spec.cache import open_cache, open_imports_cache
from mlops.spec.loader import load_project
from mlops.store.protocol import ArtifactStore

if TYPE_CHECKING:  # the apply side is imported when applying, not when only planning
    from mlops.apply.engine import ApplyReport


@dataclass
class Options:
    jobs: int = 2
    echo: Callable[[str], None] = lambda _msg: None


def open_project_store(root: Path) -> ArtifactStore:
    """The project's store; with the git registry backend, records live in refs pushed to origin."""
    from mlops.registry.composite import open_registry_store

    return open_registry_store(load_project(root), root)


def plan_change(root: Path, base: str | None, head: str | None,
                store: Callable[[], ArtifactStore] | None) -> tuple[Plan, Comparison]:
    """Plan the change from ``base`` (default: the last applied commit) to ``head`` (default: the working tree).

    The head is validated before the store is even opened. ``store=None`` plans without reading
    live state (no registry look-ups, serial 0).
    """
    disk = open_cache(root)
    head_side = read_side(root, head, disk, open_imports_cache(root))
    live = read_live(store()) if store is not None else LiveState(refreshed=False)
    cmp = compare(root, base or live.last_applied_commit or "empty", head, head_side, disk)
    commit = head_commit(root) if head is None else cmp.head.rev
    return make_plan(cmp, live, commit), cmp


def apply_saved(root: Path, plan: Plan, store: ArtifactStore, options: Options) -> ApplyReport:
    """Apply exactly ``plan``, refusing it if it no longer fits the repository or the live state."""
    from mlops.apply.engine import apply_plan
    from mlops.apply.executors import EXECUTORS
    from mlops.apply.protocol import ApplyContext
    from mlops.apply.state import read_state, write_state

    with _locked(store, root):
        state = read_state(store)
        if state.serial != plan.state_serial:
            raise StalePlanError(f"the plan was made against state serial {plan.state_serial}, but the store "
                                 f"{store.url} is at serial {state.serial} (applied {state.applied_at} by "
                                 f"{state.applied_by}); make a new plan")
        head = read_side(root, None)
        _check_head(root, plan, head.fingerprint())
        from mlops.registry.lineage import git_lineage

        ctx = ApplyContext(root=root, specs=head.specs, store=store, lineage=git_lineage(root), jobs=options.jobs,
                           echo=options.echo)
        report = apply_plan(plan, ctx, EXECUTORS)
        if report.changed or (report.completed and state.last_applied_fingerprint != plan.head.fingerprint):
            write_state(store, state, commit=plan.head.commit, fingerprint=plan.head.fingerprint, who=actor(root),
                        completed=report.completed)
    return report


def reconcile(root: Path, base: str | None, store: ArtifactStore, options: Options) -> tuple[Plan, ApplyReport]:
    """validate + diff + plan + apply, for the working tree."""
    plan, _ = plan_change(root, base, None, lambda: store)
    return plan, apply_saved(root, plan, store, options)


def _check_head(root: Path, plan: Plan, worktree_fingerprint: str) -> None:
    current = head_commit(root)
    if plan.head.rev != "worktree" and current != plan.head.rev:
        raise StalePlanError(f"the plan is for commit {plan.head.rev[:10]}, but the working tree is at "
                             f"{(current or 'no commit')[:10]}; check out that commit or make a new plan")
    if worktree_fingerprint != plan.head.fingerprint:
        raise StalePlanError("the specs in the working tree changed since the plan was made; make a new plan")


@contextmanager
def _locked(store: ArtifactStore, root: Path) -> Iterator[None]:
    from mlops.store.lock import StoreLock

    with StoreLock(store, "reconcile", owner=actor(root), ttl_seconds=6 * 3600):
        yield
