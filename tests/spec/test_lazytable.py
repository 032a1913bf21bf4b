"""A LazyTable builds a value on its first look-up and otherwise behaves as the dict it stands for."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from mlops.spec.lazytable import LazyTable

PLAIN = {"b": 2, "a": 1, "c": 3}


def table(built: list[str]) -> LazyTable:
    def maker(key: str, value: int) -> Callable[[], int]:
        def make() -> int:
            built.append(key)
            return value
        return make
    return LazyTable(makers={k: maker(k, v) for k, v in PLAIN.items()})


def test_a_look_up_builds_only_what_it_reads() -> None:
    built: list[str] = []
    t = table(built)
    assert t["a"] == 1 and t.get("c") == 3 and t.get("zz", 9) == 9
    assert built == ["a", "c"]
    assert len(t) == 3 and "b" in t and "zz" not in t and list(t) == ["b", "a", "c"] and t
    assert built == ["a", "c"]
    with pytest.raises(KeyError):
        t["zz"]


@pytest.mark.parametrize("use", [
    dict, lambda t: {**t}, lambda t: sorted(t.items()), lambda t: list(t.items()), lambda t: list(t.values()),
    lambda t: list(t.keys()), copy.copy, copy.deepcopy, lambda t: pickle.loads(pickle.dumps(t)),
    lambda t: (lambda **kw: kw)(**t), lambda t: t.copy(), lambda t: t == PLAIN, lambda t: PLAIN == t,  # noqa: SIM300 - the plain dict on the left, on purpose
    lambda t: t != PLAIN, repr, lambda t: t | {"d": 4}, lambda t: {"d": 4} | t, lambda t: list(reversed(t)),
    lambda t: set(t), len, bool,
])
def test_everything_else_sees_the_whole_table_in_order(use: Callable[[Any], Any]) -> None:
    built: list[str] = []
    t = table(built)
    t["c"]  # one value built out of order first
    assert use(t) == use(dict(PLAIN))


def test_mutations_start_from_the_whole_table() -> None:
    t = table([])
    t["d"] = 4
    assert list(t.items()) == [*PLAIN.items(), ("d", 4)]
    t = table([])
    assert t.pop("a") == 1 and dict(t) == {"b": 2, "c": 3}
    t = table([])
    t.update({"a": 0})
    assert t == {**PLAIN, "a": 0}


def test_as_a_dataclass_field() -> None:
    @dataclasses.dataclass
    class Holder:
        t: dict[str, int]

    assert dataclasses.asdict(Holder(table([]))) == {"t": PLAIN}
    assert Holder(table([])) == Holder(dict(PLAIN))
    assert LazyTable(makers={}) == {} and not LazyTable(makers={})
