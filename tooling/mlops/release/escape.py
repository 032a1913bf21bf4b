"""Untrusted text made safe for where it is shown: one terminal line, or GitHub Markdown.

Names, descriptions, commit messages, metric and feature names, class labels and gate summaries all
come from specs, data and store records, which anyone with write access to them controls. Shown
raw, they could move the cursor or recolour a terminal (ANSI escapes), or, in a pull-request body,
start HTML, links, images, tables, code fences, math, or ping people (``@user``) and link issues
(``#12``). GitHub resolves mentions *after* Markdown, on the text, so a backslash does not stop
them; a zero-width space after the ``@`` does (what Renovate and Dependabot do).
"""

from __future__ import annotations

import re
import unicodedata

ZWSP = "\u200b"
_BREAKS = "\t\n\r\v\f"
_SPACES = re.compile(r"\s+")
# What CommonMark/GFM gives a meaning anywhere in a line, plus $ (GitHub renders $...$ as math).
_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#!|~$])")
# What starts a block only at the start of a line: a list item (-, +, 1. or 1)), a setext underline.
_LINE_START = re.compile(r"^([-+=]|\d+(?=[.)]))")
_MENTION = re.compile(r"@")
_ISSUE_REF = re.compile(r"#(?=\w)")
_URL = re.compile(r"(://|\bwww\.)", re.IGNORECASE)
_CODE_UNSAFE = re.compile(r"[`|@\\]")  # a backtick ends the span, | a table cell; @: see above


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line: control and format characters removed (escape sequences; the bidi
    overrides of "Trojan Source"; zero-width ones), whitespace runs made one space, at most ``limit``
    characters (cut with an ellipsis)."""
    s = "".join(" " if c in _BREAKS else c for c in str(text) if c in _BREAKS or not _is_control(c))
    s = _SPACES.sub(" ", s).strip()
    return s if len(s) <= limit else s[: max(limit - 1, 0)].rstrip() + "…"


def terminal(text: object, limit: int = 300) -> str:
    """Safe to print on a terminal: one line, no escape sequences."""
    return one_line(text, limit)


def md(text: object, limit: int = 300) -> str:
    """Plain text for GitHub Markdown, on one line: renders as exactly these characters, and
    cannot open HTML, a link, an image, emphasis, a code span or fence, a table cell, math, nor
    mention anyone or link an issue. Safe inside a table cell."""
    s = one_line(text, limit)
    # Mentions, issue references and autolinks (https://..., www....) are found on the text as
    # rendered: break each pattern with a zero-width space, before the escapes below hide it.
    s = _MENTION.sub("@" + ZWSP, s)
    s = _ISSUE_REF.sub("#" + ZWSP, s)
    s = _URL.sub(lambda m: m.group(1)[:-1] + ZWSP + m.group(1)[-1], s)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_PUNCT.sub(r"\\\1", s)
    return _LINE_START.sub(lambda m: m.group(1) + "\\" if m.group(1)[0].isdigit() else "\\" + m.group(1), s)


def code(text: object, limit: int = 100) -> str:
    """An identifier (digest, commit, tensor name, dtype, shape) as a code span, or as escaped plain
    text when it holds a character that a code span cannot hold safely."""
    s = one_line(text, limit)
    return f"`{s}`" if s and not _CODE_UNSAFE.search(s) else md(s, limit)


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf")
