"""One plan, two renderings: terminal text (plain Python: `mlops plan` in a terminal should not pay for
importing and loading a template engine) and a Markdown pull-request comment (a jinja2 template)."""

from __future__ import annotations

import os
import re
from functools import cache
from typing import TYPE_CHECKING

from mlops.plan.model import Plan

if TYPE_CHECKING:
    import jinja2

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
    import jinja2

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "mlops", "jinja")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(path)


@cache
def _env() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("mlops.plan", "templates"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
                             undefined=jinja2.StrictUndefined, bytecode_cache=_bytecode_cache())
    env.globals.update(short=_short, md=_md)
    return env


def render(plan: Plan, fmt: str = "text") -> str:
    """``fmt`` is ``text`` or ``markdown``."""
    if fmt == "text":
        return render_text(plan)
    name = {"markdown": "plan.md.j2"}[fmt]
    return _env().get_template(name).render(plan=plan)


def render_text(plan: Plan) -> str:
    """The plan for a terminal: a header, notes, then each action with its reason and a summary."""
    on = f" (on {_short(plan.head.commit)})" if plan.head.rev == "worktree" and plan.head.commit else ""
    out = [f"Plan for {plan.project}: {_short(plan.base.rev)} → {_short(plan.head.rev)}{on}  "
           f"[state serial {plan.state_serial}]\n"]
    out += [f"note: {note}\n" for note in plan.notes]
    if not plan.actions:
        live = " Live state matches the specs." if plan.refreshed else " (Live state was not read: --no-refresh.)"
        out.append(f"No changes.{live}\n")
        return "".join(out)
    for a in plan.actions:
        stage = a.details.get("stage")
        out.append(f"  {a.symbol} {a.kind:<18} {a.asset}{f' → {stage}' if stage else ''}\n      {a.reason}\n")
        for label in ("steps", "targets"):
            if a.details.get(label):
                out.append(f"      {label}: {', '.join(str(x) for x in a.details[label])}\n")
    n = len(plan.actions)
    counts = ", ".join(f"{k_n} {k}" for k, k_n in plan.summary().items())
    out.append(f"\n{n} action{'s' if n != 1 else ''}: {counts}.\n")
    return "".join(out)
