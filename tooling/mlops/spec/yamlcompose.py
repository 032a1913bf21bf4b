"""Compose a YAML document from parser events: within limits, with positions, JSON values only.

PyYAML's own composer recurses once per nesting level (libyaml's C composer overflows the C stack
on a deep ``[[[[...]]]]``: a segfault; the pure-Python one raises RecursionError), and lets aliases
multiply a 500-byte file into billions of values ("billion laughs"). This composer reads the event
stream with an explicit stack and stops at the first event that crosses a limit of
``mlops.spec.limits``. An alias counts the full expanded size of the node it names, which is known
(and remembered) when that node closes, so counting costs one step per event, never per expanded
value. Merge keys (``<<``) are resolved as each mapping closes, so they never recurse either.

Spec data are JSON values. Mapping keys must be strings, and YAML-only types (``!!binary``,
``!!set``, ``!!omap``, ``!!pairs``, other explicit tags, ``.nan``/``.inf``, integers beyond 64 bits)
are reported as problems at their position; a YAML 1.1 timestamp such as ``2024-01-01`` stays the
string it is written as (YAML 1.2, which editors use, has no timestamps). What is reported keeps its
plain shape (a string, a list or a mapping; keys as written), so the rest of the file is still built
and checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlops.spec.limits import MAX_DEPTH, MAX_NODES, MAX_TEXT

Path = tuple[Any, ...]
KEY_MARK = "\x00key"

_Y = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = _Y + "str", _Y + "int", _Y + "float", _Y + "bool", _Y + "null"
TIMESTAMP, MERGE, VALUE, SEQ, MAP = _Y + "timestamp", _Y + "merge", _Y + "value", _Y + "seq", _Y + "map"
_SCALAR_TAGS = {STR, INT, FLOAT, BOOL, NULL, TIMESTAMP, MERGE, VALUE}
_KEY_TAGS = {STR, TIMESTAMP, MERGE, VALUE}
_WHAT = {INT: "a number", FLOAT: "a number", BOOL: "a boolean", NULL: "null"}


TOO_DEEP = f"lists and mappings nest deeper than {MAX_DEPTH} levels, the limit for a spec file"


class ComposeError(Exception):
    """The document crosses a limit (``limit``) or cannot be composed; ``mark`` is where."""

    def __init__(self, message: str, mark: Any, limit: bool = False):
        super().__init__(message)
        self.limit = limit
        self.line = mark.line + 1 if mark is not None else 1
        self.column = mark.column + 1 if mark is not None else 1


@dataclass
class _Frame:
    """An open list or mapping."""

    node: Any
    path: Path
    start: int  # values counted before this node
    start_text: int  # characters of text counted before this node
    anchor: str | None
    is_key: bool
    keys: set[str] = field(default_factory=set)
    key: Any = None  # mappings: the key node waiting for its value
    key_text: str = ""
    merges: bool = False


class JsonConstructor(SafeConstructor):
    """SafeConstructor that always builds JSON-like values; what is not JSON is reported by Composer."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys as written: `1:` is the key "1" (reported), a timestamp key stays its text.
            key = key_node.value if isinstance(key_node, ScalarNode) else _complex_key(key_node)
            out[key] = self.construct_object(value_node, deep=deep)
        return out

    def construct_lenient_int(self, node: Any) -> Any:
        try:
            return self.construct_yaml_int(node)
        except ValueError:  # more digits than Python converts: reported by Composer
            return node.value

    def construct_by_kind(self, node: Any) -> Any:
        if isinstance(node, MappingNode):
            return self.construct_yaml_map(node)
        if isinstance(node, SequenceNode):
            return self.construct_yaml_seq(node)
        return self.construct_yaml_str(node)


def _register() -> None:
    add: Any = JsonConstructor.add_constructor
    for tag in (TIMESTAMP, MERGE, VALUE):  # YAML 1.2 (what editors use) reads these as strings
        add(tag, JsonConstructor.construct_yaml_str)
    add(INT, JsonConstructor.construct_lenient_int)
    add(None, JsonConstructor.construct_by_kind)  # never reached: Composer retags what is not JSON


_register()


class PyLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, JsonConstructor, yaml.resolver.Resolver):
    """The pure-Python parser, for hosts without libyaml."""

    def __init__(self, stream: Any):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        JsonConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


def _c_loader() -> type | None:
    try:
        from yaml._yaml import CParser
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        return None

    class CLoader(CParser, JsonConstructor, yaml.resolver.Resolver):
        """libyaml's parser (about 10x faster than PyYAML's), our composer and constructor."""

        def __init__(self, stream: Any):
            CParser.__init__(self, stream)
            JsonConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return CLoader


_CLOADER = _c_loader()


def loader_class(pure_python: bool = False) -> type:
    """The C-backed loader where libyaml is available, else (or when asked) the pure-Python one."""
    return PyLoader if pure_python or _CLOADER is None else _CLOADER


def _complex_key(node: Node) -> str:
    return f"<{getattr(node, 'id', 'complex')} key at {node.start_mark.line + 1}:{node.start_mark.column + 1}>"


def _short(tag: str) -> str:
    return "!!" + tag[len(_Y):] if tag.startswith(_Y) else tag


class Composer:
    """Builds one document's node graph from ``loader``'s events; see the module docstring."""

    def __init__(self, loader: Any):
        self.loader = loader
        self.positions: dict[Path, tuple[int, int]] = {}
        self.duplicates: list[tuple[Path, int, int]] = []
        self.problems: list[tuple[Path, int, int, str]] = []
        self.anchors: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}  # anchor -> expanded size, once its node is closed
        self.texts: dict[str, int] = {}  # anchor -> characters of text in it, expanded
        self.count = 0
        self.text = 0
        self.stack: list[_Frame] = []
        self.root: Any = None

    def compose(self) -> Any:
        """The root node of the single document (None for an empty stream). Raises ComposeError
        or yaml.YAMLError."""
        get = self.loader.get_event
        get()  # stream start
        if isinstance(get(), StreamEndEvent):
            return None
        while True:
            event = get()
            kind = type(event)
            if kind is ScalarEvent:
                self._scalar(event)
            elif kind is AliasEvent:
                self._alias(event)
            elif kind is SequenceStartEvent or kind is MappingStartEvent:
                self._open(event, SequenceNode if kind is SequenceStartEvent else MappingNode)
            elif kind is DocumentEndEvent:
                break
            else:  # the end of a list or mapping
                self._close(event)
        event = get()
        if not isinstance(event, StreamEndEvent):
            raise ComposeError("expected a single document, but found another", event.start_mark)
        return self.root

    # -- events ---------------------------------------------------------------------------
    def _scalar(self, event: Any) -> None:
        path, is_key = self._slot()
        tag = self._scalar_tag(event, path + (event.value,) if is_key else path)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        self._add(1, event.start_mark, len(event.value))
        if event.anchor is not None:
            self._define(event.anchor, node, event.start_mark)
            self.sizes[event.anchor] = 1
            self.texts[event.anchor] = len(event.value)
        if not is_key:
            self._at(path, event.start_mark)
            self._check_number(node, path)
        self._finish(node, is_key)

    def _scalar_tag(self, event: Any, path: Path) -> str:
        """The scalar's tag; an explicit one that is not JSON, or does not fit the text, is reported
        and the scalar is kept as the string it is written as."""
        tag = event.tag
        if tag is None or tag == "!":
            resolved: str = self.loader.resolve(ScalarNode, event.value, event.implicit)
            return resolved
        if tag == STR or (tag in _SCALAR_TAGS and tag == self.loader.resolve(ScalarNode, event.value, (True, False))):
            return str(tag)
        if tag in _SCALAR_TAGS:
            self._problem(event, path, f"{event.value!r} is not a valid {_short(tag)}")
        else:
            self._problem(event, path, _not_json(tag))
        return STR

    def _alias(self, event: Any) -> None:
        anchor = event.anchor
        if anchor not in self.anchors:
            raise ComposeError(f"alias *{anchor} refers to no anchor defined before it", event.start_mark)
        if anchor not in self.sizes:
            raise ComposeError(f"alias *{anchor} is inside the list or mapping it names: recursive data is "
                               "not allowed", event.start_mark)
        node = self.anchors[anchor]
        path, is_key = self._slot()
        self._add(self.sizes[anchor], event.start_mark, self.texts[anchor])
        if not is_key:
            self._at(path, event.start_mark)
        self._finish(node, is_key, event.start_mark)

    def _open(self, event: Any, cls: type) -> None:
        path, is_key = self._slot()
        tag = event.tag
        default = SEQ if cls is SequenceNode else MAP
        if tag is None or tag == "!":
            tag = self.loader.resolve(cls, None, event.implicit)
        elif tag != default:  # !!set, !!omap, !!pairs, !!python/..., or a scalar's tag
            self._problem(event, path, _not_json(tag))
            tag = default
        node = cls(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if len(self.stack) >= MAX_DEPTH:
            raise ComposeError(TOO_DEEP, event.start_mark, limit=True)
        start, start_text = self.count, self.text
        self._add(1, event.start_mark)
        if event.anchor is not None:
            self._define(event.anchor, node, event.start_mark)
        if is_key:
            path = path + (KEY_MARK, _complex_key(node))
        else:
            self._at(path, event.start_mark)
        self.stack.append(_Frame(node, path, start, start_text, event.anchor, is_key))

    def _close(self, event: Any) -> None:
        frame = self.stack.pop()
        node = frame.node
        node.end_mark = event.end_mark
        if frame.anchor is not None:
            self.sizes[frame.anchor] = self.count - frame.start
            self.texts[frame.anchor] = self.text - frame.start_text
        if frame.merges:
            # Every merged node is already closed and flattened, so this never recurses deeper.
            self.loader.flatten_mapping(node)
        self._finish(node, frame.is_key)

    # -- helpers --------------------------------------------------------------------------
    def _slot(self) -> tuple[Path, bool]:
        """The path of the node about to be added, and whether it is a mapping key."""
        if not self.stack:
            return (), False
        top = self.stack[-1]
        if isinstance(top.node, SequenceNode):
            return top.path + (len(top.node.value),), False
        if top.key is None:
            return top.path, True
        return top.path + (top.key_text,), False

    def _finish(self, node: Any, is_key: bool, mark: Any = None) -> None:
        if not self.stack:
            self.root = node
            return
        top = self.stack[-1]
        if isinstance(top.node, SequenceNode):
            top.node.value.append(node)
        elif is_key:
            top.key = node
            top.key_text = self._key(top, node, mark or node.start_mark)
        else:
            top.node.value.append((top.key, node))
            top.key = None

    def _key(self, top: _Frame, node: Any, mark: Any) -> str:
        line, col = mark.line + 1, mark.column + 1
        if not isinstance(node, ScalarNode):
            text = _complex_key(node)
            self.problems.append((top.path, line, col, f"a mapping key must be a string, not a {node.id}"))
            return text
        text = node.value
        if node.tag == MERGE:
            top.merges = True
            return text
        if text in top.keys:
            self.duplicates.append((top.path + (text,), line, col))
        top.keys.add(text)
        self.positions[top.path + (KEY_MARK, text)] = (line, col)
        if node.tag not in _KEY_TAGS:
            what = _WHAT.get(node.tag, f"tagged {_short(node.tag)}")
            self.problems.append((top.path + (text,), line, col,
                                  f"mapping key {text!r} is {what} in YAML; keys must be strings: "
                                  f"quote it (\"{text}\")"))
        return text

    def _add(self, n: int, mark: Any, text: int = 0) -> None:
        self.count += n
        self.text += text
        if self.count > MAX_NODES:
            raise ComposeError(f"the document has more than {MAX_NODES} values once its aliases are expanded, "
                               "the limit for a spec file", mark, limit=True)
        if self.text > MAX_TEXT:
            raise ComposeError(f"the document has more than {MAX_TEXT} characters of text once its aliases are "
                               "expanded, the limit for a spec file", mark, limit=True)

    def _define(self, anchor: str, node: Any, mark: Any) -> None:
        if anchor in self.anchors:
            raise ComposeError(f"anchor &{anchor} is defined twice", mark)
        self.anchors[anchor] = node

    def _at(self, path: Path, mark: Any) -> None:
        self.positions[path] = (mark.line + 1, mark.column + 1)

    def _problem(self, at: Any, path: Path, message: str) -> None:
        """Record a problem at the start of ``at`` (a node or an event)."""
        self.problems.append((path, at.start_mark.line + 1, at.start_mark.column + 1, message))

    def _check_number(self, node: Any, path: Path) -> None:
        if node.tag == INT:
            try:
                big = self.loader.construct_yaml_int(node).bit_length() > 63
            except ValueError:  # more digits than Python converts
                big = True
            if big:
                self._problem(node, path, "integer out of range: a spec number must fit in 64 bits "
                                          "(quote it if it is a string)")
        elif node.tag == FLOAT and not math.isfinite(self.loader.construct_yaml_float(node)):
            self._problem(node, path, f"{node.value!r} is not a JSON number (quote it if it is a string)")


def _not_json(tag: str) -> str:
    return (f"the YAML tag {_short(tag)} is not allowed: spec data are JSON values (strings, numbers, booleans, "
            "null, lists and mappings)")
