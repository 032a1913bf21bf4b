"""The ``${...}`` reference syntax of pipeline steps.

Step inputs may reference ``${steps.STEP.outputs.NAME}`` and ``${datasets.NAME}``; command
arguments may reference ``${inputs.NAME}``, ``${outputs.NAME}`` and ``${params.NAME}`` (a dotted
path into the step's merged params). Anything else is a ``PipelineError`` naming the
pipeline file, the step and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlops.errors import PipelineError
from mlops.spec.model import REF_RE, Pipeline, Step


# Plain classes rather than dataclasses or NamedTuples: defining those executes generated code,
# and `mlops run` start-up counts.
class StepOutputRef:
    """``${steps.STEP.outputs.NAME}``"""

    __slots__ = ("step", "output")

    def __init__(self, step: str, output: str) -> None:
        self.step = step
        self.output = output

    def __repr__(self) -> str:
        return f"${{steps.{self.step}.outputs.{self.output}}}"


class DatasetRef:
    """``${datasets.NAME}``"""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"${{datasets.{self.name}}}"


InputRef = StepOutputRef | DatasetRef


def where(pipeline: Pipeline, step: Step, field: str) -> str:
    """A location prefix for error messages: ``file: pipeline P step S field``."""
    origin = pipeline.file or f"pipeline {pipeline.name}"
    return f"{origin}: pipeline {pipeline.name!r} step {step.name!r} {field}"


def parse_input_ref(expr: str, pipeline: Pipeline, step: Step, field: str) -> InputRef:
    """Parse the inside of one ``${...}`` found in a step input."""
    parts = expr.split(".")
    # Step and output names may contain dots, so anchor on the fixed words.
    if parts[0] == "steps" and len(parts) >= 4 and parts[-2] == "outputs":
        return StepOutputRef(".".join(parts[1:-2]), parts[-1])
    if parts[0] == "datasets" and len(parts) >= 2:
        return DatasetRef(".".join(parts[1:]))
    raise PipelineError(
        f"{where(pipeline, step, field)}: unsupported reference ${{{expr}}} "
        "(inputs may use ${steps.STEP.outputs.NAME} or ${datasets.NAME})"
    )


def input_refs(pipeline: Pipeline, step: Step) -> dict[str, list[InputRef]]:
    """Every reference in each input of ``step`` (input name -> refs, in order)."""
    return {
        name: [parse_input_ref(m.group(1), pipeline, step, f"input {name!r}") for m in REF_RE.finditer(value)]
        for name, value in step.inputs.items()
    }


def resolve_inputs(pipeline: Pipeline, step: Step, datasets: Mapping[str, str]) -> dict[str, str]:
    """Input name -> path, relative to the repository root (the runner resolves it inside, see ``mlops.paths``)."""
    resolved: dict[str, str] = {}
    for name, value in step.inputs.items():
        field = f"input {name!r}"

        def replace(match: Any, field: str = field) -> str:
            ref = parse_input_ref(match.group(1), pipeline, step, field)
            if isinstance(ref, DatasetRef):
                if ref.name not in datasets:
                    raise PipelineError(f"{where(pipeline, step, field)}: unknown dataset {ref.name!r}")
                return datasets[ref.name]
            return output_path(pipeline, step, field, ref)

        resolved[name] = REF_RE.sub(replace, value)
    return resolved


def output_path(pipeline: Pipeline, step: Step, field: str, ref: StepOutputRef) -> str:
    """The declared path of the step output ``ref`` points at."""
    try:
        producer = pipeline.step(ref.step)
    except KeyError:
        raise PipelineError(f"{where(pipeline, step, field)}: unknown step {ref.step!r}") from None
    if ref.output not in producer.outputs:
        raise PipelineError(
            f"{where(pipeline, step, field)}: step {ref.step!r} has no output {ref.output!r}"
        )
    return producer.outputs[ref.output]


def substitute_command(
    pipeline: Pipeline, step: Step, inputs: Mapping[str, str], params: Mapping[str, Any]
) -> tuple[str, ...]:
    """The step's argv with ``${inputs.X}``, ``${outputs.X}`` and ``${params.X}`` replaced."""

    def replace(match: Any) -> str:
        expr: str = match.group(1)
        kind, _, name = expr.partition(".")
        field = "command"
        if kind == "inputs" and name in inputs:
            return inputs[name]
        if kind == "outputs" and name in step.outputs:
            return step.outputs[name]
        if kind == "params" and name:
            return _param_text(_lookup_param(params, name, pipeline, step))
        raise PipelineError(f"{where(pipeline, step, field)}: unknown reference ${{{expr}}}")

    return tuple(REF_RE.sub(replace, arg) for arg in step.command)


def _lookup_param(params: Mapping[str, Any], dotted: str, pipeline: Pipeline, step: Step) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise PipelineError(f"{where(pipeline, step, 'command')}: unknown param {dotted!r}")
        value = value[part]
    return value


def _param_text(value: Any) -> str:
    # Strings go in verbatim; everything else as JSON so that True -> "true", 0.1 -> "0.1".
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
