"""A ``dict`` whose values are built when first read.

A plan for a one-file change reads a handful of the thousands of specs a large repository holds;
building every typed value up front would make its cost grow with the repository. ``LazyTable``
knows every key (and its order) from the start and builds a value on its first look-up. Anything
that needs all values (iterating values or items, comparing, copying, mutating, printing) builds
them all first, in the table's order, so it behaves as the plain dict it stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values


class LazyTable(dict[str, Any]):
    """name -> value, each made by ``makers[name]()`` (or ``make(name)`` for each of ``keys``) on first use,
    keys in the order given.

    Without either it is made as a dict is (``type(d)(pairs)``, as ``dataclasses.asdict`` does)."""

    def __init__(self, *args: Any, makers: dict[str, Callable[[], Any]] | None = None,
                 keys: Iterable[str] | None = None, make: Callable[[str], Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if makers is not None:
            self._makers: dict[str, Any] = dict.fromkeys(makers)
            self._make: Callable[[str], Any] = lambda key: makers[key]()
        else:
            self._makers = dict.fromkeys(keys or ())
            self._make = make or (lambda key: None)
        self._full = not self._makers

    def _fill(self) -> None:
        if self._full:
            return
        built = {k: dict.__getitem__(self, k) if dict.__contains__(self, k) else self._make(k) for k in self._makers}
        dict.clear(self)
        dict.update(self, built)
        self._full = True

    def __getitem__(self, key: str) -> Any:
        if not self._full and not dict.__contains__(self, key) and key in self._makers:
            dict.__setitem__(self, key, self._make(key))
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - this is get itself

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) if self._full else key in self._makers

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self) if self._full else iter(list(self._makers))

    def __len__(self) -> int:
        return dict.__len__(self) if self._full else len(self._makers)

    def __bool__(self) -> bool:
        return len(self) > 0

    def keys(self) -> dict_keys[str, Any]:
        self._fill()
        return dict.keys(self)

    def values(self) -> dict_values[str, Any]:
        self._fill()
        return dict.values(self)

    def items(self) -> dict_items[str, Any]:
        self._fill()
        return dict.items(self)

    def __eq__(self, other: object) -> bool:
        self._fill()
        if isinstance(other, LazyTable):
            other._fill()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)

    def __reversed__(self) -> Iterator[str]:
        self._fill()
        return dict.__reversed__(self)

    def __reduce__(self) -> Any:  # copy, deepcopy, pickle: as the plain dict it stands for
        self._fill()
        return (dict, (dict(dict.items(self)),))

    def copy(self) -> dict[str, Any]:
        self._fill()
        return dict(dict.items(self))

    def __or__(self, other: Any) -> Any:
        self._fill()
        return dict.__or__(self.copy(), other)

    def __ror__(self, other: Any) -> Any:
        self._fill()
        return dict.__or__(dict(other), self.copy())

    # every mutation starts from the whole table
    def __setitem__(self, key: str, value: Any) -> None:
        self._fill()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._fill()
        dict.__delitem__(self, key)

    def __ior__(self, other: Any) -> LazyTable:  # type: ignore[override]
        self._fill()
        dict.update(self, other)
        return self

    def pop(self, *args: Any) -> Any:
        self._fill()
        return dict.pop(self, *args)

    def popitem(self) -> tuple[str, Any]:
        self._fill()
        return dict.popitem(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._fill()
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._fill()
        dict.update(self, *args, **kwargs)

    def clear(self) -> None:
        self._fill()
        dict.clear(self)
