"""A model card as GitHub Markdown, for a pull-request body or comment.

Every value on a card comes from specs, data or store records, so every one is escaped
(``mlops.release.escape``): a hostile model description, commit message, metric or feature name,
class label or gate summary shows as its characters and nothing more. The card must also fit
GitHub's body limit (65,536 characters) with room to spare for what the pull request adds: each
section shows a bounded number of rows (the JSON card has them all, and the Markdown says how many
are left out); when the whole is still too long, it is drawn again with tighter bounds, and only
as a last resort cut at a line with a note.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import jinja2

from mlops.release import escape
from mlops.release.card import ModelCard

MARKER = "<!-- mlops-model-card -->"  # lets a pull-request body find and replace its card
MAX_MARKDOWN = 65_536  # GitHub's limit on a pull-request or comment body, in characters
# How many rows each section shows at full size; smaller when the card would not fit.
LIMITS = {"files": 50, "inputs": 50, "metrics": 100, "labels": 25, "features": 30, "tensors": 50,
          "promotions": 20, "gates": 20, "approvals": 20, "tags": 50}
SCALES = (1.0, 0.5, 0.25, 0.1)
BAR_WIDTH = 20
CUT_NOTE = "\n\n*The card was cut here to fit a pull-request body; `mlops models card --format json` has it all.*\n"


def render_markdown(card: ModelCard, max_chars: int = MAX_MARKDOWN) -> str:
    """The card as GitHub Markdown of at most ``max_chars`` characters (counted in UTF-16 units,
    as GitHub counts them; a card that must fit beside other text gets a smaller budget)."""
    template = _env().get_template("card.md.j2")
    text = ""
    for scale in SCALES:
        text = template.render(card=_View(scale).card(card), marker=MARKER)
        if length(text) <= max_chars:
            return text
    return bound(text, max_chars)


def bound(text: str, max_chars: int) -> str:
    """``text`` cut at a line boundary, with a note, so that it has at most ``max_chars`` characters.
    A card has no multi-line construct but tables, and a table cut between rows is still one."""
    if length(text) <= max_chars:
        return text
    budget = max_chars - length(CUT_NOTE)
    lines, used = [], 0
    for line in text.splitlines(keepends=True):
        used += length(line)
        if used > budget:
            break
        lines.append(line)
    return "".join(lines).rstrip("\n") + CUT_NOTE


def length(text: str) -> int:
    """Characters as GitHub counts them (UTF-16 code units: an emoji counts two)."""
    return len(text.encode("utf-16-le")) // 2


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("mlops.release", "templates"), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
                              undefined=jinja2.StrictUndefined)


def num(v: Any) -> str:
    """A number as a card shows it (six significant digits); anything else, escaped."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return escape.md(v, 100)
    if isinstance(v, int):
        return str(v)
    return f"{v:.6g}" if math.isfinite(v) else str(v)


_STATUS = {"passed": "✅ passed", "failed": "❌ failed", "awaiting": "⏳ awaiting", "error": "⚠️ error"}


class _View:
    """A card's values escaped and cut to size for the template; ``scale`` shrinks every bound."""

    def __init__(self, scale: float):
        self.scale = scale

    def md(self, text: Any, limit: int) -> str:
        return escape.md("" if text is None else text, max(20, int(limit * self.scale)))

    def code(self, text: Any, limit: int = 100) -> str:
        return escape.code("" if text is None else text, limit)

    def more(self, items: list[Any], key: str) -> tuple[list[Any], int]:
        """The first rows of a section, and how many are left out."""
        cap = max(1, int(LIMITS[key] * self.scale))
        return items[:cap], max(len(items) - cap, 0)

    def card(self, card: ModelCard) -> dict[str, Any]:
        files, more_files = self.more(card.files, "files")
        inputs, more_inputs = self.more(sorted(card.data.get("inputs", {}).items()), "inputs")
        tags, more_tags = self.more(sorted(card.tags.items()), "tags")
        cap = max(1, int(LIMITS["promotions"] * self.scale))
        entered = card.entered[-cap:]  # the latest ones
        return {
            "name": self.code(card.model, 200), "version": num(card.version), "flavor": self.code(card.flavor),
            "description": self.md(card.description, 2000),
            "tags": [(self.md(k, 100), self.md(v, 200)) for k, v in tags], "more_tags": more_tags,
            "stages": [{"stage": self.code(s.get("stage")), "since": self.md(s.get("since") or "?", 50)}
                       for s in card.stages],
            "files": [{"path": self.code(f.get("path"), 200), "size": num(f.get("size")),
                       "digest": self.code(f.get("digest"))} for f in files], "more_files": more_files,
            "inputs": [(self.code(k, 200), self.code(d)) for k, d in inputs], "more_inputs": more_inputs,
            "evaluation": None if card.evaluation is None else self.evaluation(card.evaluation),
            "metrics": self.metrics(card.metrics, card.evaluation),
            "signature": self.signature(card.signature),
            "lineage": self.lineage(card.lineage),
            "entered": [self.entry(e) for e in entered], "more_entered": len(card.entered) - len(entered),
        }

    def lineage(self, lin: dict[str, Any]) -> dict[str, Any]:
        def ident(key: str) -> str | None:
            return self.code(lin[key]) if lin.get(key) else None

        return {"commit": ident("git_commit"), "dirty": bool(lin.get("git_dirty")),
                "author": self.md(lin.get("git_author"), 200), "message": self.md(lin.get("git_message"), 1000),
                "pipeline": ident("pipeline"), "run": ident("pipeline_run"),
                "environment": ident("environment_identity"),
                "registered_by": self.md(lin.get("registered_by") or "?", 200),
                "registered_at": self.md(lin.get("registered_at") or "?", 50)}

    def metrics(self, registered: dict[str, Any], ev: dict[str, Any] | None) -> dict[str, Any]:
        evaluated = ev["metrics"] if ev else {}
        shown, more = self.more(sorted(set(registered) | set(evaluated)), "metrics")
        rows = [(self.md(n, 100), num(registered[n]) if n in registered else "–",
                 num(evaluated[n]) if n in evaluated else "–") for n in shown]
        return {"rows": rows, "more": more}

    def evaluation(self, ev: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data": self.code(ev["data"], 200), "digest": self.code(ev["data_digest"]), "rows": num(ev["rows"]),
            "label": self.code(ev["label"]), "task": self.md(ev["task"], 50), "at": self.md(ev["at"], 50),
            "by": self.md(ev["by"], 200), "importance_metric": self.md(ev["importance_metric"], 100),
            "repeats": num(ev["repeats"]), "seed": num(ev["seed"]), "confusion": None, "labels_over": 0}
        conf = ev.get("confusion")
        if conf:
            labels = conf["labels"]
            if len(labels) > max(2, int(LIMITS["labels"] * self.scale)):  # a matrix is shown whole, or not
                out["labels_over"] = len(labels)
            else:
                out["confusion"] = {"labels": [self.md(lb, 60) for lb in labels],
                                    "rows": [[num(c) for c in row] for row in conf["matrix"]]}
        ranked = sorted(ev["importance"], key=lambda i: -i["mean"] if math.isfinite(i["mean"]) else math.inf)
        shown, out["more_features"] = self.more(ranked, "features")
        top = max([i["mean"] for i in shown if math.isfinite(i["mean"])] + [0.0])
        out["importance"] = [{"feature": self.md(i["feature"], 80), "mean": _fixed(i["mean"]),
                              "std": _fixed(i["std"]), "bar": _bar(i["mean"], top)} for i in shown]
        return out

    def signature(self, sig: dict[str, Any] | None) -> dict[str, Any] | None:
        if sig is None:
            return None
        rows: list[tuple[str, str, str, str]] = []
        more = 0
        for role in ("inputs", "outputs"):
            tensors, over = self.more(list(sig.get(role) or []), "tensors")
            more += over
            for t in tensors:
                shape = t.get("shape")
                dims = "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
                rows.append((role[:-1], self.code(t.get("name")), self.code(t.get("dtype")), self.code(dims)))
        return {"rows": rows, "more": more}

    def entry(self, e: dict[str, Any]) -> dict[str, Any]:
        gates = e.get("gates")
        results, more_gates = self.more(list(gates["results"]) if gates else [], "gates")
        approved, more_approvals = self.more(list(e.get("approvals") or []), "approvals")
        left = e.get("left")
        return {
            "stage": self.code(e.get("stage")), "how": e.get("how"), "at": self.md(e.get("at"), 50),
            "by": self.md(e.get("by"), 100), "why": self.md(e.get("why"), 300),
            "commit": self.code(e.get("commit")) if e.get("commit") else None,
            "from_version": num(e["from_version"]) if e.get("from_version") is not None else None,
            "gates": None if gates is None else {
                "rows": [(self.code(r.get("kind"), 40), _status(r), self.md(r.get("summary"), 300)) for r in results],
                "more": more_gates},
            "approvals": [{"by": self.md(a.get("by"), 100), "at": self.md(a.get("at"), 50),
                           "why": self.md(a.get("why"), 200), "source": self.md(a.get("source"), 50),
                           "pull_request": a["pull_request"] if _is_count(a.get("pull_request")) else None}
                          for a in approved], "more_approvals": more_approvals,
            "left": None if not left else {
                "how": "rolled back" if left.get("how") == "rolled_back" else "replaced",
                "at": self.md(left.get("at"), 50), "by": self.md(left.get("by"), 100),
                "why": self.md(left.get("why"), 200), "version": num(left.get("version"))},
        }


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _fixed(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else str(v)


def _bar(value: float, top: float) -> str:
    """A text bar: ``BAR_WIDTH`` blocks for the most important feature, none for zero or less."""
    if not (top > 0 and math.isfinite(value) and value > 0):
        return ""
    return "█" * max(1, round(BAR_WIDTH * value / top))


def _status(result: dict[str, Any]) -> str:
    status = result.get("status")
    if isinstance(status, str) and status in _STATUS:
        return _STATUS[status]
    return _STATUS["passed"] if result.get("passed") is True else escape.md(status or "?", 30)
