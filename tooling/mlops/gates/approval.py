"""``approval: {required: N, approvers: [...]}``: N distinct people approved this version for this stage.

Approvals are ``approved`` events of the release trail for this version and stage (``mlops approve``,
or a promotion pull request's approving reviews). With ``approvers``, only those count; an approver
matches the recorded identity case-insensitively, as the whole identity (a GitHub login, ``user@host``)
or as the e-mail address in a git identity ``Name <email>``. Too few is ``awaiting``, not failed.

``required`` counts people, not records: identities are compared as ``person`` says (case-insensitive,
the e-mail of ``Name <email>``, and an approval made in GitHub Actions, recorded as ``alice (github
actions run 42)``, is alice's), so one person approving twice, from two runs or with the case of their
name changed, counts once.
"""

from __future__ import annotations

import re

from mlops.gates.protocol import GateContext, GateResult, awaiting, error, passed
from mlops.release.records import approvals


def approval_gate(ctx: GateContext) -> GateResult:
    opts = ctx.options
    required, named = opts.get("required", 1), opts.get("approvers") or []
    if not (isinstance(required, int) and not isinstance(required, bool) and required >= 1) or \
            not (isinstance(named, list) and all(isinstance(a, str) for a in named)):
        return error("approval", f"malformed approval gate {ctx.gate!r}: required is a positive integer, "
                                 "approvers a list of names")
    recorded = approvals(ctx.events, ctx.version.version, ctx.stage)
    counted = sorted({e.by for e in recorded if not named or any(matches(a, e.by) for a in named)})
    ignored = sorted({e.by for e in recorded} - set(counted))
    # Named approvers are people: two identities of one approver (a login and a git e-mail) count once;
    # without names, two records of one person (two Actions runs, another case) count once too.
    n = len({a.strip().lower() for a in named if any(matches(a, who) for who in counted)}) if named \
        else len({person(who) for who in counted})
    evidence = {"required": required, "count": n, "approvers": named, "approved_by": counted,
                "not_allowed": ignored, "events": [e.seq for e in recorded if e.by in counted]}
    who = f" ({', '.join(counted)})" if counted else ""
    if n >= required:
        return passed("approval", f"{n} of {required} approval(s){who}", **evidence)
    by = f" by {' or '.join(named)}" if named else ""
    extra = f"; not counted: {', '.join(ignored)} (not among the approvers)" if ignored else ""
    return awaiting("approval", f"awaiting approval: {n} of {required}{who}{by}{extra}", **evidence)


_ACTIONS_RUN = re.compile(r"\s*\(github actions run [^()]*\)\s*$")  # how mlops records an Actions actor
_EMAIL = re.compile(r"<([^<>]+)>\s*$")


def matches(approver: str, identity: str) -> bool:
    """Whether the approver named in mlops.yaml is who an approval was recorded by."""
    a, who = approver.strip().lower(), _ACTIONS_RUN.sub("", identity).strip().lower()
    if a == who:
        return True
    email = _EMAIL.search(who)
    return email is not None and email.group(1).strip() == a


def person(identity: str) -> str:
    """Who an identity is, for counting distinct approvers: the e-mail of ``Name <email>``, else the
    identity itself (a GitHub login, the actor of an Actions run without its run), case-insensitively."""
    who = _ACTIONS_RUN.sub("", identity).strip().lower()
    email = _EMAIL.search(who)
    return email.group(1).strip() if email is not None else who
