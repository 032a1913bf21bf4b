"""The reconcile story, in one place:

    specs(base), specs(head) --load+validate--> asset graphs --diff--> ChangeSet
    ChangeSet + live state --plan--> Plan --apply--> executors --> ApplyReport (+ new state)

The base is the last applied commit (or the snapshot of the dirty tree that was applied); the plan
pins the head's tree; apply refuses a plan that no longer fits (state serial, tree, commit) and a
dirty tree unless the plan allows it; the state moves on only when no action failed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import DirtyWorktreeError, PathError, PlanError, RevisionError, StalePlanError
from mlops.graph.compare import Comparison, Side, compare, read_side
from mlops.plan.build import make_plan
from mlops.plan.live import LiveState
from mlops.plan.model import Plan
from mlops.reconcile.live import actor, read_live
from mlops.spec.cache import open_cache, open_imports_cache
from mlops.spec.loader import load_project
from mlops.spec.source import PROJECT_FILE, is_spec_path
from mlops.store.protocol import ArtifactStore
from mlops.worktree import WorktreeState, commit_exists, merge_base, read_worktree

if TYPE_CHECKING:  # the apply side is imported when applying, not when only planning
    from mlops.apply.engine import ApplyReport
    from mlops.apply.state import ReconcileState
    from mlops.store.lock import StoreLock


@dataclass
class Options:
    jobs: int = 2
    echo: Callable[[str], None] = lambda _msg: None


def open_project_store(root: Path) -> ArtifactStore:
    """The project's store; with the git registry backend, records live in refs pushed to origin."""
    from mlops.registry.composite import open_registry_store

    return open_registry_store(load_project(root), root)


def plan_change(root: Path, base: str | None, head: str | None, store: Callable[[], ArtifactStore] | None, *,
                allow_dirty: bool = False, use_merge_base: bool = False,
                retrain: Mapping[str, str] | None = None) -> tuple[Plan, Comparison]:
    """Plan the change from ``base`` (default: what was applied last) to ``head`` (default: the working tree).

    The head is validated before the store is even opened. ``store=None`` plans without reading
    live state (no registry look-ups, serial 0). ``use_merge_base`` plans what merging ``head``
    into ``base`` would change (a pull request that is behind its base branch).
    """
    disk = open_cache(root)
    head_side = read_side(root, head, disk, open_imports_cache(root))
    opened = store() if store is not None else None
    live = read_live(opened, root, head_side.specs) if opened is not None else LiveState(refreshed=False)
    if retrain:
        live = dataclasses.replace(live, retrain=_retrain_requests(head_side.specs, retrain))
    wt = read_worktree(root, owned_paths(head_side), used_by(head_side), pinned_files(head_side)) \
        if head is None else None
    base_rev = _base(root, base, head, live, use_merge_base)
    cmp = compare(root, base_rev, head, head_side, disk)
    commit = wt.commit if wt is not None else cmp.head.rev
    tree = wt.tree if wt is not None else getattr(cmp.head.source, "tree", None) or _tree_of(root, cmp.head.rev)
    plan = make_plan(cmp, live, commit, tree=tree, dirty=wt.dirty if wt else (), allow_dirty=allow_dirty)
    return plan, cmp


def _retrain_requests(specs: Any, retrain: Mapping[str, str]) -> dict[str, str]:
    """``--retrain NAME`` requests as pipeline -> why, checked: NAME is a pipeline, or a model trained by one
    (a drift alert names the model). The reason (it may come from an event's payload) is cut to one
    printable line."""
    out: dict[str, str] = {}
    for name, why in retrain.items():
        pipeline = name if name in specs.pipelines else None
        model = specs.models.get(name)
        if pipeline is None and model is not None:
            pipeline = model.source.pipeline
            if not pipeline:
                raise PlanError(f"--retrain {name}: model {name} comes from files in the repository, not a "
                                "pipeline: there is nothing to retrain")
        if pipeline is None:
            known = ", ".join(sorted({*specs.pipelines, *specs.models})) or "none"
            raise PlanError(f"--retrain {name[:100]!r}: no such pipeline or model (known: {known})")
        text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(why)).split())
        out[pipeline] = text[:200] or "no reason given"
    return out


def apply_saved(root: Path, plan: Plan, store: ArtifactStore, options: Options) -> ApplyReport:
    """Apply exactly ``plan``, refusing it if it no longer fits the repository or the live state."""
    from mlops.apply.engine import apply_plan
    from mlops.apply.executors import EXECUTORS
    from mlops.apply.protocol import ApplyContext
    from mlops.apply.state import read_state

    with _locked(store, root, options) as lock:
        state = read_state(store)
        if state.serial != plan.state_serial:
            raise StalePlanError(f"the plan was made against state serial {plan.state_serial}, but the store "
                                 f"{store.url} is at serial {state.serial} (applied {state.applied_at} by "
                                 f"{state.applied_by}); make a new plan")
        head = read_side(root, None)
        wt = read_worktree(root, owned_paths(head), used_by(head), pinned_files(head))
        _check_head(root, plan, head.fingerprint(), wt)
        check_actions(plan, head)
        from mlops.registry.lineage import git_lineage

        ctx = ApplyContext(root=root, specs=head.specs, store=store, lineage=git_lineage(root), jobs=options.jobs,
                           actor=actor(root),
                           echo=options.echo)
        report = apply_plan(plan, ctx, EXECUTORS)
        lock.check()  # a run whose lock was broken meanwhile must not move the state on
        _record(root, store, state, plan, report, wt)
        _warn_if_steps_edited(root, head, wt, options)
    return report


def reconcile(root: Path, base: str | None, store: ArtifactStore, options: Options,
              allow_dirty: bool = False) -> tuple[Plan, ApplyReport]:
    """validate + diff + plan + apply, for the working tree."""
    plan, _ = plan_change(root, base, None, lambda: store, allow_dirty=allow_dirty)
    check_clean(plan)
    return plan, apply_saved(root, plan, store, options)


def check_clean(plan: Plan, dirty: tuple[str, ...] | None = None) -> None:
    """DirtyWorktreeError when the working tree (``dirty``: its uncommitted paths now, default: when the plan
    was made) has uncommitted changes that the plan may not apply."""
    dirty = plan.head.dirty if dirty is None else dirty
    if dirty and not plan.allow_dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise DirtyWorktreeError(f"the working tree has uncommitted changes ({shown}); what is applied must be "
                                 "what is recorded: commit them (or add files nothing uses to .gitignore), or pass "
                                 "--allow-dirty to apply the tree as it is (recorded as a snapshot of the dirty tree)")


def owned_paths(side: Side) -> list[str]:
    """Paths a reconcile writes or versions by content itself: pipeline outputs and dataset paths.

    A dataset path that holds (or lies inside) something the plan pins (a spec, step code or a
    module it imports, a lockfile, a model file) is not left out: `path: pipelines` would otherwise
    hide edits of the step code below it from the dirty check and the plan's tree."""
    from mlops import paths

    specs = side.specs
    outputs = [p for pipeline in specs.pipelines.values() for s in pipeline.steps for p in s.outputs.values()]
    pinned = {f.rstrip("/") for f in pinned_files(side)}

    def pins(path: str) -> bool:
        try:
            norm = paths.lexical(path)
        except PathError:
            return True  # refused by validation anyway
        return any(paths.overlap(norm, os.path.normpath(f)) for f in pinned if f)

    return outputs + [d.path for d in specs.datasets.values() if not pins(d.path)]


def pinned_files(side: Side) -> set[str]:
    """The repository files (and "dir/" folders) a plan pins: specs, step code and what it imports,
    lockfiles, model files (dataset paths are versioned by content instead)."""
    files = {f for a in side.graph.assets.values() if a.kind != "dataset" for f in a.files}
    return files | {a.spec_file for a in side.graph.assets.values() if a.spec_file} | {PROJECT_FILE}


def used_by(side: Side) -> Callable[[str], bool]:
    """Whether a repository path is something reconcile uses at this revision: a spec, or a file an asset
    depends on (step code and the local modules it imports, lockfiles, inputs, model files)."""
    files: set[str] = set()
    for asset in side.graph.assets.values():
        files.add(asset.spec_file)
        files.update(f.rstrip("/") for f in asset.files)

    def relevant(path: str) -> bool:
        if path in files or is_spec_path(path):
            return True
        parts = path.split("/")
        return any("/".join(parts[:i]) in files for i in range(1, len(parts)))

    return relevant


def _base(root: Path, base: str | None, head: str | None, live: LiveState, use_merge_base: bool) -> str:
    if base is not None:
        return merge_base(root, base, head or "HEAD") if use_merge_base else base
    last = live.last_applied_commit
    if last is None:
        return "empty"
    if not commit_exists(root, last):
        raise RevisionError(
            f"the last applied commit {last[:12]} (recorded in {live.store_url}) is not in this clone: history was "
            "rewritten (force-push), the clone is shallow (use fetch-depth: 0 or `git fetch --unshallow`), or it "
            "was a --allow-dirty snapshot made on another machine; pass --base REV to plan from a commit you know "
            "was applied")
    return last


# What each action kind acts on; a prune acts on an asset the head no longer defines.
ACTS_ON = {"register_dataset": "dataset", "build_environment": "environment", "run_pipeline": "pipeline",
           "register_model": "model", "evaluate_gates": "model", "promote": "model", "propose_promotion": "model",
           "deploy": "endpoint"}


def check_actions(plan: Plan, head: Side) -> None:
    """PlanError unless every action of ``plan`` is one `mlops plan` could have made for ``head``:
    a unique id of its kind and asset, acting on an asset of the right kind that the head defines
    (plan files are untrusted: an action naming something else would crash an executor)."""
    from mlops.errors import PlanError

    seen: set[str] = set()
    stages = {s.name for s in head.specs.project.stages}
    for a in plan.actions:
        stage = a.details.get("stage")
        suffix = f"@{stage}" if "stage" in a.details else ""
        kind, _, name = a.asset.partition("/")
        problem: str | None = None
        if a.id != f"{a.kind}:{a.asset}{suffix}" or a.id in seen:
            problem = "is repeated" if a.id in seen else f"does not match its kind and asset ({a.kind}, {a.asset})"
        elif a.kind == "prune":
            if kind not in ACTS_ON.values() or not name:
                problem = f"cannot prune {a.asset!r}"
        elif kind != ACTS_ON[a.kind] or a.asset not in head.graph.assets:
            problem = f"acts on {a.asset!r}, which the specs being applied do not define as a {ACTS_ON[a.kind]}"
        elif a.kind in ("evaluate_gates", "promote", "propose_promotion") and stage not in stages:
            problem = f"names the stage {stage!r}, which mlops.yaml does not define"
        elif a.kind in ("evaluate_gates", "promote") and \
                a.details.get("version") != _pinned(head, name, str(stage), a.details.get("version")):
            problem = f"names version {a.details.get('version')!r}, which is not what the specs pin for {stage!r}"
        elif a.kind == "promote" and f"evaluate_gates:{a.asset}@{stage}" not in seen:
            problem = f"does not follow the evaluation of the gates of {stage!r} (evaluate_gates:{a.asset}@{stage})"
        elif a.kind == "promote" and f"evaluate_gates:{a.asset}@{stage}" not in a.depends_on:
            problem = f"does not depend on the evaluation of the gates of {stage!r}"
        if problem is not None:
            raise PlanError(f"the plan's action {a.id!r} {problem}; it was not made by `mlops plan` for this "
                            "tree: make a new plan")
        seen.add(a.id)


def _pinned(head: Side, model: str, stage: str, asked: object) -> object:
    """The version the head's specs pin to ``stage`` (None for an automatic stage's newest version)."""
    spec = head.specs.models.get(model)
    found = next((s for s in head.specs.project.stages if s.name == stage), None)
    if spec is None or found is None:
        return object()  # never equal: the asset or stage check reports it
    if stage in spec.stages:
        return spec.stages[stage]
    return None if found.auto else object()


def _tree_of(root: Path, rev: str) -> str | None:
    from mlops.worktree import tree_of

    return tree_of(root, rev)


def _check_head(root: Path, plan: Plan, spec_fingerprint: str, wt: WorktreeState) -> None:
    if wt.tree is None:
        raise RevisionError(f"{root} is not a git repository: reconcile applies what git holds (git init, commit)")
    check_clean(plan, wt.dirty)
    if plan.head.rev != "worktree" and wt.commit != plan.head.rev:
        raise StalePlanError(f"the plan is for commit {plan.head.rev[:10]}, but the working tree is at "
                             f"{(wt.commit or 'no commit')[:10]}; check out that commit or make a new plan")
    if plan.head.commit != wt.commit:
        raise StalePlanError(f"the plan was made on commit {(plan.head.commit or 'none')[:10]}, but HEAD is now "
                             f"{(wt.commit or 'none')[:10]}; make a new plan")
    if spec_fingerprint != plan.head.fingerprint:
        raise StalePlanError("the specs in the working tree changed since the plan was made; make a new plan")
    if wt.tree != plan.head.tree:
        from mlops.worktree import changed_between_trees

        changed = changed_between_trees(root, plan.head.tree, wt.tree) if plan.head.tree and wt.tree else []
        what = f" ({', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''})" if changed else ""
        raise StalePlanError(f"files in the working tree changed since the plan was made{what}; the plan pins "
                             "the code it was reviewed with: make a new plan")


def _record(root: Path, store: ArtifactStore, state: ReconcileState, plan: Plan, report: ApplyReport,
            wt: WorktreeState) -> None:
    """Move the state on: the applied commit (or dirty snapshot) only when nothing failed."""
    from mlops.apply.state import write_state
    from mlops.worktree import snapshot_commit

    who = actor(root)
    outstanding = tuple(report.outstanding())
    if not report.ok:
        if report.changed:  # live state changed (a version was registered, say): old plans are stale
            write_state(store, state, who)
        return
    moved = (state.last_applied_tree != wt.tree or state.dirty != wt.is_dirty
             or (not wt.is_dirty and state.last_applied_commit != wt.commit))
    if report.changed or moved or _ids(state.outstanding) != _ids(outstanding):
        write_state(store, state, who, last_applied_commit=snapshot_commit(root, wt) if wt.is_dirty else wt.commit,
                    last_applied_fingerprint=plan.head.fingerprint, last_applied_tree=wt.tree,
                    head_commit=wt.commit, dirty=wt.is_dirty, outstanding=outstanding)


def _warn_if_steps_edited(root: Path, head: Side, before: WorktreeState, options: Options) -> None:
    """Steps may write only their outputs; one that edited a file reconcile uses is named (the state records the
    tree that was applied, from before the edit, and the next reconcile refuses the tree until it is restored)."""
    from mlops.worktree import changed_between_trees

    after = read_worktree(root, owned_paths(head), used_by(head), pinned_files(head))
    if after.tree == before.tree or not (after.tree and before.tree):
        return
    changed = changed_between_trees(root, before.tree, after.tree) or list(after.dirty)
    shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
    options.echo(f"warning: files that reconcile uses changed while it ran ({shown}): a step wrote outside its "
                 "outputs. What was applied is recorded as it was before; restore them (git checkout -- PATH) or "
                 "commit them, and reconcile again")


def _ids(outstanding: tuple[dict[str, object], ...]) -> list[tuple[object, object]]:
    return sorted((o.get("id"), o.get("status")) for o in outstanding)


@contextmanager
def _locked(store: ArtifactStore, root: Path, options: Options) -> Iterator[StoreLock]:
    from mlops.store.lock import StoreLock

    lock = StoreLock(store, "reconcile", owner=actor(root))
    with lock:
        if lock.broke is not None:
            options.echo(f"took over a stale lock: {lock.broke.describe()}")
        yield lock
