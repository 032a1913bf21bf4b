"""Safe YAML loading that remembers where every value came from.

``load_yaml`` returns the plain Python data plus a map from JSON path (a tuple of keys and
indices) to the 1-based (line, column) of that value, and of each mapping key under
``path + (KEY_MARK, key)``. Duplicate keys are reported, not silently overwritten.
Only the safe loader is ever used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Path = tuple[Any, ...]
KEY_MARK = "\x00key"


@dataclass
class YamlDoc:
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[tuple[Path, int, int]] = field(default_factory=list)

    def locate(self, path: Path, key: bool = False) -> tuple[int, int]:
        """Best position for ``path``: the value itself, its key, or the nearest ancestor."""
        if key and path and (path[:-1] + (KEY_MARK, path[-1])) in self.positions:
            return self.positions[path[:-1] + (KEY_MARK, path[-1])]
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (1, 1))


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int, column: int):
        super().__init__(message)
        self.line = line
        self.column = column


def load_yaml(text: bytes | str) -> YamlDoc:
    """Parse one YAML document safely, with positions. Raises YamlSyntaxError."""
    import yaml  # imported here: plans served from the parse cache never need it

    try:  # the C parser is ~10x faster; fall back to pure Python where libyaml is missing
        loader_class: Any = yaml.CSafeLoader
    except AttributeError:  # pragma: no cover
        loader_class = yaml.SafeLoader
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(None, {(): (1, 1)})
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(f"{e.problem or e}".strip(), line, col) from None
    except yaml.YAMLError as e:
        raise YamlSyntaxError(str(e), 1, 1) from None
    finally:
        loader.dispose()
    doc = YamlDoc(data)
    _walk(node, (), doc)
    return doc


def _walk(node: Any, path: Path, doc: YamlDoc) -> None:
    import yaml

    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else repr(knode.value)
            if key in seen:
                doc.duplicates.append((path + (key,), knode.start_mark.line + 1, knode.start_mark.column + 1))
            seen.add(key)
            doc.positions[path + (KEY_MARK, key)] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            _walk(vnode, path + (key,), doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), doc)


def json_path(path: Path) -> str:
    """``("deployments", 0, "model")`` -> ``$.deployments[0].model``."""
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out
