"""Typed values from JSON records, which are untrusted input.

Records in the store (run records, registry versions, the reconciler's state) may be damaged or
written by someone else. ``fields_of`` checks a record's JSON object against the field types of
the dataclass it becomes, so a bad record is refused once, with a ``CorruptRecordError`` that names
it and says what to do, instead of a TypeError somewhere later. Unknown keys are ignored (a newer
mlops may have written them); a missing field with no default, or a value of the wrong type, is an
error.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar, Union

from mlops.errors import CorruptRecordError

T = TypeVar("T")


def parse_json(raw: bytes | str, where: str, fix: str) -> Any:
    """The JSON value of a record, or CorruptRecordError naming ``where`` and the way forward ``fix``."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        raise CorruptRecordError(f"{where} is not valid JSON ({str(e)[:80]}); {fix}") from None


def fields_of(cls: type[T], data: Any, where: str, fix: str,
              nested: dict[str, Callable[[Any], Any]] | None = None) -> T:
    """An instance of dataclass ``cls`` from ``data``, with every field's type checked.

    ``nested`` converts the fields that hold other records (their converters raise ValueError,
    TypeError or CorruptRecordError on bad input).
    """
    if not isinstance(data, dict):
        raise CorruptRecordError(f"{where} is not a JSON object; {fix}")
    hints = _hints(typing.cast(Any, cls))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CorruptRecordError(f"{where} lacks its field {f.name!r}; {fix}")
            continue
        value = data[f.name]
        if nested and f.name in nested:
            try:
                value = nested[f.name](value)
            except CorruptRecordError:
                raise
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise CorruptRecordError(f"{where}: field {f.name!r} is malformed ({e}); {fix}") from None
        elif not fits(value, hints[f.name]):
            raise CorruptRecordError(f"{where}: field {f.name!r} has a value of the wrong type "
                                     f"({type(value).__name__}); {fix}")
        elif isinstance(value, list) and typing.get_origin(_strip_none(hints[f.name])) is tuple:  # JSON list
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_none(hint: Any) -> Any:
    args = typing.get_args(hint)
    if _is_union(hint) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a (simple) type hint: str, int, float, bool, None, Any, unions,
    ``dict[K, V]``, ``list[X]`` and ``tuple[X, ...]`` (a JSON list)."""
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if _is_union(hint):
        return any(fits(value, h) for h in typing.get_args(hint))
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is dict:
        return isinstance(value, dict) and all(fits(k, args[0]) and fits(v, args[1]) for k, v in value.items())
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(fits(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return False
