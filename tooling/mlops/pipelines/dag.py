"""The step graph of a pipeline, built from ``${steps.STEP.outputs.NAME}`` input references.

Specs are validated elsewhere; this module still raises ``PipelineError`` for cycles and
unknown references because running a broken graph would be worse than stopping.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from mlops.errors import PipelineError
from mlops.pipelines.refs import StepOutputRef, input_refs, output_path, where
from mlops.spec.model import Pipeline


@dataclass(frozen=True)
class Dag:
    """Steps of one pipeline with their dependencies, in a stable topological order."""

    pipeline: str
    order: tuple[str, ...]  # topological; ties keep the order of the spec
    parents: Mapping[str, frozenset[str]]
    children: Mapping[str, frozenset[str]]

    def descendants(self, name: str) -> set[str]:
        """Every step that (transitively) consumes an output of ``name``."""
        seen: set[str] = set()
        todo = list(self.children[name])
        while todo:
            step = todo.pop()
            if step not in seen:
                seen.add(step)
                todo.extend(self.children[step])
        return seen

    def ancestors(self, name: str) -> set[str]:
        """Every step whose outputs ``name`` (transitively) consumes."""
        seen: set[str] = set()
        todo = list(self.parents[name])
        while todo:
            step = todo.pop()
            if step not in seen:
                seen.add(step)
                todo.extend(self.parents[step])
        return seen


def build_dag(pipeline: Pipeline) -> Dag:
    """The DAG of ``pipeline``; ``PipelineError`` on duplicate steps, unknown references or cycles."""
    names = [s.name for s in pipeline.steps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineError(f"{pipeline.file or pipeline.name}: duplicate step names {duplicates}")
    parents: dict[str, set[str]] = {n: set() for n in names}
    for step in pipeline.steps:
        for input_name, refs in input_refs(pipeline, step).items():
            for ref in refs:
                if isinstance(ref, StepOutputRef):
                    output_path(pipeline, step, f"input {input_name!r}", ref)  # raises if unknown
                    if ref.step == step.name:
                        raise PipelineError(f"{where(pipeline, step, f'input {input_name!r}')}: "
                                            "a step cannot consume its own output")
                    parents[step.name].add(ref.step)
    children: dict[str, set[str]] = {n: set() for n in names}
    for name, ps in parents.items():
        for p in ps:
            children[p].add(name)
    order = _topological(names, parents)
    if len(order) < len(names):
        stuck = [n for n in names if n not in order]
        raise PipelineError(f"{pipeline.file or pipeline.name}: pipeline {pipeline.name!r} has a cycle "
                            f"through steps {stuck}")
    return Dag(
        pipeline=pipeline.name,
        order=tuple(order),
        parents={n: frozenset(p) for n, p in parents.items()},
        children={n: frozenset(c) for n, c in children.items()},
    )


def _topological(names: list[str], parents: Mapping[str, set[str]]) -> list[str]:
    # Kahn's algorithm, always taking the earliest ready step in spec order so the result is stable.
    remaining = {n: len(parents[n]) for n in names}
    children: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for p in parents[n]:
            children[p].append(n)
    position = {n: i for i, n in enumerate(names)}
    ready = [position[n] for n in names if remaining[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        step = names[heapq.heappop(ready)]
        order.append(step)
        for c in children[step]:
            remaining[c] -= 1
            if remaining[c] == 0:
                heapq.heappush(ready, position[c])
    return order
