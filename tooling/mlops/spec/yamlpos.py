"""Safe YAML loading that remembers where every value came from, at bounded cost.

``load_yaml`` returns the plain Python data plus a map from JSON path (a tuple of keys and
indices) to the 1-based (line, column) of that value, and of each mapping key under
``path + (KEY_MARK, key)``. Duplicate keys and values that are not JSON are reported, not
silently overwritten or passed on. Only the safe constructor is ever used, and the document is
composed within the limits of ``mlops.spec.limits`` (see ``mlops.spec.yamlcompose``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Path = tuple[Any, ...]
KEY_MARK = "\x00key"  # the same marker as mlops.spec.yamlcompose.KEY_MARK (not imported: it imports yaml)


@dataclass
class YamlDoc:
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[tuple[Path, int, int]] = field(default_factory=list)
    problems: list[tuple[Path, int, int, str]] = field(default_factory=list)  # values that are not JSON

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
    """The file cannot be read as one YAML document within the limits; the message says why."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(message)
        self.line = line
        self.column = column


def load_yaml(text: bytes | str, *, pure_python: bool = False) -> YamlDoc:
    """Parse one YAML document safely, with positions. Raises YamlSyntaxError.

    ``pure_python`` uses PyYAML's Python parser even where libyaml is available (for tests).
    """
    import yaml  # imported here: plans served from the parse cache never need it

    from mlops.spec.limits import MAX_SPEC_BYTES
    from mlops.spec.yamlcompose import TOO_DEEP, ComposeError, Composer, loader_class

    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise YamlSyntaxError(f"refused: the file has {size} bytes; a spec file may have at most {MAX_SPEC_BYTES}", 1, 1)
    loader = None
    try:
        loader = loader_class(pure_python)(text)  # the pure-Python reader checks the characters here
        composer = Composer(loader)
        node = composer.compose()
        data = None if node is None else loader.construct_document(node)
    except ComposeError as e:
        raise YamlSyntaxError(f"{'refused' if e.limit else 'invalid YAML'}: {e}", e.line, e.column) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        if "maximum nesting depth" in str(e.problem):  # libyaml >= 0.2.5's own limit (far above ours) came first
            raise YamlSyntaxError(f"refused: {TOO_DEEP}", line, col) from None
        raise YamlSyntaxError(f"invalid YAML: {e.problem or e}".strip(), line, col) from None
    except yaml.YAMLError as e:
        raise YamlSyntaxError(f"invalid YAML: {e}", 1, 1) from None
    finally:
        if loader is not None:
            loader.dispose()
    positions = composer.positions
    positions.setdefault((), (1, 1))
    return YamlDoc(data, positions, composer.duplicates, composer.problems)


def json_path(path: Path) -> str:
    """``("deployments", 0, "model")`` -> ``$.deployments[0].model``."""
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out
