"""A spec cannot exhaust or crash the reader: size, alias expansion and nesting are bounded, data are JSON."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.errors import SpecError
from mlops.spec.limits import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES, MAX_TEXT
from mlops.spec.loader import load_specs
from mlops.spec.yamlpos import YamlSyntaxError, load_yaml
from tests.gitrepo import Repo, example_repo, mlops

MODEL_HEAD = "kind: Model\nname: m\nflavor: onnx\nsource: {files: [x.onnx]}\n"


def billion_laughs(levels: int = 10) -> str:
    """The classic: each level a list of ten aliases of the previous one (10**levels strings)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")


def _limited_mlops(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with 2 GiB of address space at most, and a generous guard against hanging forever."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, "-m", "mlops.cli", "-C", str(repo.path), *args], capture_output=True,
                          text=True, preexec_fn=limit, timeout=120, env=os.environ.copy())


def test_billion_laughs_is_refused_with_its_position(repo: Repo) -> None:
    text = "kind: Model\nname: lol\n" + billion_laughs()
    assert len(text) < 1000
    repo.write("models/lol.yaml", text)
    out = _limited_mlops(repo, "validate")
    assert out.returncode == 9, out.stderr
    assert f"models/lol.yaml:7:22: $: refused: the document has more than {MAX_NODES} values once its aliases " \
           "are expanded" in out.stderr
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr
    repo.commit("lol")  # the same from a git revision
    out = _limited_mlops(repo, "validate", "--rev", "HEAD")
    assert out.returncode == 9 and "models/lol.yaml:7:22: $: refused" in out.stderr, out.stderr


def test_merge_keys_count_what_they_copy(repo: Repo) -> None:
    # Each level merges the previous one twice: flattening would double the pairs per level.
    lines = ["m0: &m0 {k: v}"]
    for i in range(1, 40):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: v}}")
    repo.write("models/merge.yaml", "kind: Model\nname: merge\n" + "\n".join(lines) + "\n")
    out = _limited_mlops(repo, "validate")
    assert out.returncode == 9 and "models/merge.yaml:" in out.stderr and "refused" in out.stderr, out.stderr


DEEP = {
    "flow lists": "[" * 100_000 + "]" * 100_000,
    "flow mappings": "{a: " * 50_000 + "1" + "}" * 50_000,
    "block lists": "- " * 100_000 + "x\n",
    "block mappings": "".join("  " * i + "a:\n" for i in range(200)) + "  " * 200 + "1\n",
}


@pytest.mark.parametrize("shape", DEEP)
def test_deep_nesting_is_refused_by_the_c_parser_without_crashing(repo: Repo, shape: str) -> None:
    # libyaml's composer recurses in C: a 100,000-deep document used to kill the process (SIGSEGV).
    repo.write("models/deep.yaml", "kind: Model\nname: deep\nx: " + ("\n" if shape.startswith("block") else "")
               + DEEP[shape])
    out = _limited_mlops(repo, "validate")
    assert out.returncode == 9, (out.returncode, out.stderr[-2000:])
    assert "models/deep.yaml:" in out.stderr and f"nest deeper than {MAX_DEPTH} levels" in out.stderr


@pytest.mark.parametrize("shape", DEEP)
@pytest.mark.parametrize("pure_python", [True, False])
def test_deep_nesting_is_refused_by_both_parsers(shape: str, pure_python: bool) -> None:
    with pytest.raises(YamlSyntaxError, match=f"nest deeper than {MAX_DEPTH} levels"):
        load_yaml(DEEP[shape], pure_python=pure_python)


@pytest.mark.parametrize("pure_python", [True, False])
def test_nesting_up_to_the_limit_is_fine(pure_python: bool) -> None:
    doc = load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, pure_python=pure_python)
    depth, value = 0, doc.data
    while isinstance(value, list):
        depth, value = depth + 1, value[0] if value else None
    assert depth == MAX_DEPTH


@pytest.mark.parametrize("pure_python", [True, False])
@pytest.mark.parametrize(("text", "message"), [
    ("a: &a [*a]\n", "recursive data is not allowed"),
    ("a: &a {b: *a}\n", "recursive data is not allowed"),
    ("a: *nowhere\n", "refers to no anchor"),
    ("a: &x 1\nb: &x 2\n", "anchor &x is defined twice"),
    ("a: 1\n---\nb: 2\n", "expected a single document"),
    (billion_laughs(), "values once its aliases are expanded"),
])
def test_alias_abuse_is_refused(text: str, message: str, pure_python: bool) -> None:
    with pytest.raises(YamlSyntaxError, match=message):
        load_yaml(text, pure_python=pure_python)


def big_string_laughs(copies: int = 2000) -> str:
    """Few values, but each an alias of one 400 KB string: 800 MB of text for anything that
    serialises the data (the plan's fingerprints and parse cache wrote it all to disk)."""
    return "params:\n  big: &a " + "x" * 400_000 + "\n  many: [" + ",".join(["*a"] * copies) + "]\n"


def test_a_large_string_aliased_many_times_is_refused(repo: Repo) -> None:
    text = "kind: Pipeline\nname: laughs\nsteps: []\n" + big_string_laughs()
    assert len(text) < MAX_SPEC_BYTES and text.count("*a") < MAX_NODES
    repo.write("pipelines/laughs.yaml", text)
    repo.commit("laughs")
    for args in (("validate",), ("plan", "--base", "HEAD~1", "--head", "HEAD", "--no-refresh")):
        out = _limited_mlops(repo, *args)
        assert out.returncode == 9, (args, out.returncode, out.stderr[-2000:])
        assert "pipelines/laughs.yaml:6:" in out.stderr and f"more than {MAX_TEXT} characters of text" in out.stderr
    cache = repo.path / ".mlops/cache/specs.json"
    assert not cache.exists() or cache.stat().st_size < MAX_SPEC_BYTES


@pytest.mark.parametrize("pure_python", [True, False])
def test_text_counts_what_aliases_copy(pure_python: bool) -> None:
    with pytest.raises(YamlSyntaxError, match="characters of text once its aliases are expanded"):
        load_yaml(big_string_laughs(), pure_python=pure_python)
    with pytest.raises(YamlSyntaxError, match="characters of text once its aliases are expanded"):
        load_yaml("a: &a {k: " + "x" * 100_000 + "}\nb: [" + ",".join(["*a"] * 50) + "]\n", pure_python=pure_python)
    assert load_yaml("a: &a " + "x" * 100_000 + "\nb: [*a, *a, *a]\n", pure_python=pure_python).data["b"][2] == "x" * 100_000


def test_aliases_within_the_limit_still_work() -> None:
    doc = load_yaml("base: &b {x: 1, y: [1, 2]}\nother:\n  <<: *b\n  y: 3\ncopy: *b\n")
    assert doc.data == {"base": {"x": 1, "y": [1, 2]}, "other": {"x": 1, "y": 3}, "copy": {"x": 1, "y": [1, 2]}}
    assert doc.locate(("copy",)) == (5, 7) and doc.locate(("other", "y")) == (4, 6)


def test_an_oversized_spec_is_refused_before_it_is_parsed(repo: Repo) -> None:
    filler = "# " + "x" * 100 + "\n"
    repo.write("models/huge.yaml", MODEL_HEAD + filler * (MAX_SPEC_BYTES // len(filler) + 1))
    size = (repo.path / "models/huge.yaml").stat().st_size
    expected = f"models/huge.yaml:1:1: $: refused: the file has {size} bytes; a spec file may have at most " \
               f"{MAX_SPEC_BYTES}"
    out = mlops(repo, "validate", check=False)
    assert out.returncode == 9 and expected in out.stderr, out.stderr
    repo.commit("huge")
    out = mlops(repo, "validate", "--rev", "HEAD", check=False)
    assert out.returncode == 9 and expected in out.stderr, out.stderr


def test_a_large_data_file_next_to_step_code_is_not_a_spec(repo: Repo) -> None:
    line = "- [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
    repo.write("pipelines/wine/table.yaml", line * (MAX_SPEC_BYTES // len(line) + 1))
    mlops(repo, "validate")
    repo.commit("data")
    mlops(repo, "validate", "--rev", "HEAD")
    # ... unless it says it is one
    repo.write("pipelines/wine/table.yaml", "kind: Pipeline\n" + line * (MAX_SPEC_BYTES // len(line) + 1))
    out = mlops(repo, "validate", check=False)
    assert out.returncode == 9 and "pipelines/wine/table.yaml:1:1: $: refused: the file has" in out.stderr


def test_non_string_keys_are_refused_at_their_line_and_plan_does_not_crash(repo: Repo) -> None:
    repo.edit("models/wine-classifier.yaml", "tags:", "tags:\n  1: one\n  null: x\n  yes: y")
    text = (repo.path / "models/wine-classifier.yaml").read_text().splitlines()
    line = text.index("  1: one") + 1
    out = mlops(repo, "validate", check=False)
    assert out.returncode == 9
    assert f"models/wine-classifier.yaml:{line}:3: $.tags.1: mapping key '1' is a number in YAML; keys must be " \
           "strings: quote it (\"1\")" in out.stderr
    assert f"models/wine-classifier.yaml:{line + 1}:3: $.tags.null: mapping key 'null' is null in YAML" in out.stderr
    assert f"models/wine-classifier.yaml:{line + 2}:3: $.tags.yes: mapping key 'yes' is a boolean" in out.stderr
    plan = mlops(repo, "plan", check=False)
    assert plan.returncode == 9 and "internal error" not in plan.stderr and "$.tags.1" in plan.stderr, plan.stderr


def test_yaml_only_types_are_refused_and_timestamps_stay_strings(repo: Repo) -> None:
    repo.edit("models/wine-classifier.yaml", "tags:", "tags:\n  released: 2024-01-01\n  at: 2024-01-01 10:00:00")
    mlops(repo, "validate", "--output", "json")
    assert load_specs(repo.path).models["wine-classifier"].tags["released"] == "2024-01-01"
    assert load_specs(repo.path).models["wine-classifier"].tags["at"] == "2024-01-01 10:00:00"
    repo.edit("models/wine-classifier.yaml", "released: 2024-01-01",
              "bin: !!binary aGVsbG8=\n  set: !!set {a, b}\n  omap: !!omap [a: 1]\n  nan: .nan\n"
              "  big: 123456789012345678901234567890\n  obj: !python/object:os.system x")
    with pytest.raises(SpecError) as e:
        load_specs(repo.path)
    text = "\n".join(str(d) for d in e.value.diagnostics)
    for path, what in (("bin", "!!binary is not allowed"), ("set", "!!set is not allowed"),
                       ("omap", "!!omap is not allowed"), ("nan", "'.nan' is not a JSON number"),
                       ("big", "integer out of range"), ("obj", "!python/object:os.system is not allowed")):
        assert f"$.tags.{path}: " in text and what in text, (path, text)


def test_a_key_repeated_through_an_alias_is_not_reported_twice() -> None:
    doc = load_yaml("a: &a {x: 1, x: 2}\nb: *a\nc: *a\n")
    assert [p for p, _, _ in doc.duplicates] == [("a", "x")]


@pytest.mark.parametrize("pure_python", [True, False])
@pytest.mark.parametrize(("text", "data", "message"), [
    ('a: !!map "ab"\n', {"a": "ab"}, "!!map is not allowed"),
    ("a: !!seq {b: 1}\n", {"a": {"b": 1}}, "!!seq is not allowed"),
    ("a: !!float abc\n", {"a": "abc"}, "'abc' is not a valid !!float"),
    ("a: !!int 1.5\n", {"a": "1.5"}, "'1.5' is not a valid !!int"),
    ("!!int x: 1\n", {"x": 1}, "'x' is not a valid !!int"),
    ("a: !!str 12\n", {"a": "12"}, None),
    ("a: !!int 12\n", {"a": 12}, None),
])
def test_explicit_tags_that_do_not_fit_are_reported_and_kept_as_written(text: str, data: object, message: str | None,
                                                                        pure_python: bool) -> None:
    doc = load_yaml(text, pure_python=pure_python)
    assert doc.data == data
    assert [m for _, _, _, m in doc.problems if message is None or message in m] == \
        ([] if message is None else [m for _, _, _, m in doc.problems])
    assert bool(doc.problems) == (message is not None)
