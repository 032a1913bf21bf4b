"""JSON Schema validation of one spec document, turned into located diagnostics."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from mlops.errors import Diagnostic, MlopsError
from mlops.spec.yamlpos import YamlDoc, json_path

SCHEMA_FILES = {
    "Project": "project.json",
    "Environment": "environment.json",
    "Dataset": "dataset.json",
    "Pipeline": "pipeline.json",
    "Model": "model.json",
    "Endpoint": "endpoint.json",
}


def schema_text(kind: str) -> str:
    """The JSON Schema (draft 2020-12) of a kind, as shipped in the package."""
    match = {k.lower(): k for k in SCHEMA_FILES}.get(kind.lower())
    if match is None:
        raise MlopsError(f"unknown kind {kind!r}; kinds are: {', '.join(SCHEMA_FILES)}")
    return resources.files("mlops.spec").joinpath("schemas", SCHEMA_FILES[match]).read_text()


@cache
def _validator(kind: str) -> Any:
    from jsonschema import Draft202012Validator, validators

    strict = validators.extend(Draft202012Validator, {"pattern": _pattern})
    return strict(json.loads(schema_text(kind)))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """``pattern`` as JSON Schema means it (ECMA-262): ``$`` is the end of the string. Python's
    ``$`` also matches before a final newline, which let ``name: "m\\n"`` through as a name."""
    import re

    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not re.search(_ecma_end(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _ecma_end(pattern: str) -> str:
    import re

    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_document(file: str, kind: str, doc: YamlDoc) -> list[Diagnostic]:
    """Every schema violation of one document, each at its file:line:column."""
    out: list[Diagnostic] = []
    for err in _validator(kind).iter_errors(doc.data):
        out.extend(_diagnose(file, doc, err))
    return out


def _diagnose(file: str, doc: YamlDoc, err: Any) -> list[Diagnostic]:
    from jsonschema.exceptions import best_match

    path = tuple(err.absolute_path)
    if err.validator in ("oneOf", "anyOf") and err.context:
        # report the alternative that came closest, not "is not valid under any of the given schemas"
        closest = _closest_alternative(err)
        if closest is not None:
            return [d for e in closest for d in _diagnose(file, doc, e)]
        return _diagnose(file, doc, best_match(err.context))
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        out = []
        for key in err.instance:
            if key in allowed:
                continue
            line, col = doc.locate(path + (key,), key=True)
            out.append(Diagnostic(file, line, col, json_path(path + (key,)),
                                  f"unknown field {key!r}{did_you_mean(str(key), allowed)}"))
        return out
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        line, col = doc.locate(path)
        return [Diagnostic(file, line, col, json_path(path + (missing,)), f"required field {missing!r} is missing")]
    if err.validator == "enum":
        choices = [str(c) for c in err.validator_value]
        hint = did_you_mean(str(err.instance), choices) if isinstance(err.instance, str) else ""
        line, col = doc.locate(path)
        return [Diagnostic(file, line, col, json_path(path),
                           f"{err.instance!r} is not one of {', '.join(choices)}{hint}")]
    if err.validator == "const":
        line, col = doc.locate(path)
        return [Diagnostic(file, line, col, json_path(path), f"must be {err.validator_value!r}, not {err.instance!r}")]
    if err.validator == "pattern" and path and path[-1] == "name":
        line, col = doc.locate(path)
        return [Diagnostic(file, line, col, json_path(path),
                           f"{err.instance!r} is not a valid name: use lowercase letters, digits, '.', '_' and '-'")]
    line, col = doc.locate(path)
    return [Diagnostic(file, line, col, json_path(path), err.message)]


def _closest_alternative(err: Any) -> list[Any] | None:
    """For oneOf over object shapes: the branch sharing the most keys with the instance."""
    if not isinstance(err.instance, dict):
        return None
    by_branch: dict[int, list[Any]] = {}
    for sub in err.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    branches = err.schema.get(err.validator, [])
    best, best_score = None, -1
    keys = set(err.instance)
    for i, branch in enumerate(branches):
        props = set(branch.get("properties", {}))
        score = len(keys & props)
        if score > best_score and i in by_branch:
            best, best_score = i, score
    if best is None or best_score == 0:
        return None
    return by_branch[best]
