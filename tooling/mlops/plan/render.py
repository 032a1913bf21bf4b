"""One plan, two renderings: terminal text and a Markdown pull-request comment (jinja2 templates)."""

from __future__ import annotations

from functools import cache

import jinja2

from mlops.plan.model import Plan

MARKER = "<!-- mlops-plan -->"  # lets the PR workflow find and update its one sticky comment


def _short(rev: str | None) -> str:
    if not rev:
        return "-"
    return rev[:10] if len(rev) == 40 else rev


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("mlops.plan", "templates"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
                             undefined=jinja2.StrictUndefined)
    env.globals.update(short=_short, md=_md)
    return env


def render(plan: Plan, fmt: str = "text") -> str:
    """``fmt`` is ``text`` or ``markdown``."""
    name = {"text": "plan.txt.j2", "markdown": "plan.md.j2"}[fmt]
    return _env().get_template(name).render(plan=plan)
