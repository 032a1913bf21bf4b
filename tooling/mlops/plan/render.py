"""One plan, two renderings: terminal text and a Markdown pull-request comment (jinja2 templates)."""

from __future__ import annotations

import os
import re
from functools import cache

import jinja2

from mlops.plan.model import Plan

MARKER = "<!-- mlops-plan -->"  # lets the PR workflow find and update its one sticky comment


def _short(rev: str | None) -> str:
    if not rev:
        return "-"
    return rev[:10] if len(rev) == 40 else rev


_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#!~|<>&])")


def _md(text: str) -> str:
    """``text`` as literal Markdown in a table cell: file names come from pull requests, and one named
    ``<img src=...>`` or ``[approve](https://...)`` would render as an image or a link in the comment."""
    escaped = _MD_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(m[1], "\\" + m[1]), text)
    return escaped.replace("\r", " ").replace("\n", " ")


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates, per user: compiling them costs more than rendering a plan."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "mlops", "jinja")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(path)


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("mlops.plan", "templates"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
                             undefined=jinja2.StrictUndefined, bytecode_cache=_bytecode_cache())
    env.globals.update(short=_short, md=_md)
    return env


def render(plan: Plan, fmt: str = "text") -> str:
    """``fmt`` is ``text`` or ``markdown``."""
    name = {"text": "plan.txt.j2", "markdown": "plan.md.j2"}[fmt]
    return _env().get_template(name).render(plan=plan)
