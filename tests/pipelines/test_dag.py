"""The step DAG and the ${...} reference syntax."""

from __future__ import annotations

import pytest

from mlops.errors import PipelineError
from mlops.pipelines.dag import build_dag
from mlops.pipelines.refs import resolve_inputs, substitute_command
from mlops.spec.model import Pipeline, Step


def out(step: str, name: str = "o") -> str:
    return "${steps." + step + ".outputs." + name + "}"


def step(name: str, *parents: str) -> Step:
    return Step(name, ("true",), inputs={p: out(p) for p in parents}, outputs={"o": f"out/{name}"})


def test_topological_order_is_stable_and_respects_dependencies() -> None:
    # declared out of order on purpose: d needs b and c, b needs a
    pipeline = Pipeline("p", (step("d", "b", "c"), step("c"), step("b", "a"), step("a"), step("e")))
    dag = build_dag(pipeline)
    assert dag.order == ("c", "a", "b", "d", "e")  # earliest ready step in spec order first
    assert dag.parents["d"] == {"b", "c"}
    assert dag.children["a"] == {"b"}
    assert dag.descendants("a") == {"b", "d"}
    assert dag.descendants("e") == set()
    assert dag.ancestors("d") == {"a", "b", "c"}


def test_cycles_are_errors() -> None:
    with pytest.raises(PipelineError, match=r"cycle through steps \['a', 'b'\]"):
        build_dag(Pipeline("p", (step("a", "b"), step("b", "a"), step("c"))))
    with pytest.raises(PipelineError, match="its own output"):
        build_dag(Pipeline("p", (step("a", "a"),)))


def test_unknown_references_name_the_file_step_and_input() -> None:
    bad_step = Pipeline("p", (step("a", "zzz"),), file="pipelines/p.yaml")
    with pytest.raises(PipelineError, match=r"pipelines/p.yaml: pipeline 'p' step 'a' input 'zzz': unknown step 'zzz'"):
        build_dag(bad_step)
    bad_output = Pipeline("p", (step("a"), Step("b", ("true",), inputs={"x": out("a", "nope")})))
    with pytest.raises(PipelineError, match="step 'a' has no output 'nope'"):
        build_dag(bad_output)
    bad_kind = Pipeline("p", (Step("b", ("true",), inputs={"x": "${params.lr}"}),))
    with pytest.raises(PipelineError, match="unsupported reference"):
        build_dag(bad_kind)
    with pytest.raises(PipelineError, match="duplicate step names"):
        build_dag(Pipeline("p", (step("a"), step("a"))))


def test_inputs_and_command_substitution() -> None:
    train = Step(
        "train",
        ("python", "train.py", "--data", "${inputs.data}", "--split", "${inputs.split}", "--out", "${outputs.model}",
         "--lr=${params.opt.lr}", "${params.name}", "${params.flag}"),
        inputs={"data": "${datasets.wine}", "split": out("prep", "train") + "/part-0"},
        outputs={"model": "out/model.onnx"},
        params={"opt": {"lr": 0.1}, "flag": True},
    )
    prep = Step("prep", ("true",), outputs={"train": "out/train"})
    pipeline = Pipeline("p", (prep, train), params={"name": "wine", "flag": False})
    inputs = resolve_inputs(pipeline, train, {"wine": "data/wine.csv"})
    assert inputs == {"data": "data/wine.csv", "split": "out/train/part-0"}
    argv = substitute_command(pipeline, train, inputs, pipeline.step_params(train))
    assert argv == ("python", "train.py", "--data", "data/wine.csv", "--split", "out/train/part-0",
                    "--out", "out/model.onnx", "--lr=0.1", "wine", "true")
    with pytest.raises(PipelineError, match=r"unknown reference \$\{outputs.nope\}"):
        substitute_command(pipeline, Step("x", ("${outputs.nope}",)), {}, {})
