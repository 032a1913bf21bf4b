"""``signature: {allow_breaking: false}``: the version accepts every request the stage's holder accepts.

Breaking, compared with the holder: an input removed or added (ONNX inputs are all required, so callers
of the holder do not send a new one), an input whose dtype changed, an input whose shape accepts less
(another rank, or a dimension that was dynamic or another size and is now fixed; a fixed dimension
becoming dynamic accepts more and is fine), and an output removed or of another dtype (what callers
read). ``allow_breaking: true`` lets the version in anyway, with the changes in the evidence.
"""

from __future__ import annotations

from mlops.gates.protocol import GateContext, GateResult, failed, passed
from mlops.registry.records import Dim, Signature


def signature_gate(ctx: GateContext) -> GateResult:
    allow = ctx.options.get("allow_breaking", False) is True
    v, holder = ctx.version.version, ctx.holder
    if holder is None:
        return passed("signature", f"{ctx.stage} holds no version: nothing to be compatible with",
                      holder=None, allow_breaking=allow)
    if holder.version == v:
        return passed("signature", f"v{v} already holds {ctx.stage}", holder=v, allow_breaking=allow)
    mine, theirs = ctx.version.signature, holder.signature
    if mine is None or theirs is None:
        changes = [f"v{v if mine is None else holder.version} has no signature to compare"]
    else:
        changes = breaking_changes(theirs, mine)
    evidence = {"holder": holder.version, "allow_breaking": allow, "breaking": changes,
                "inputs": None if mine is None else [t.to_dict() for t in mine.inputs],
                "holder_inputs": None if theirs is None else [t.to_dict() for t in theirs.inputs]}
    if not changes:
        assert mine is not None
        return passed("signature", f"compatible with v{holder.version} ({len(mine.inputs)} input(s), "
                                   f"{len(mine.outputs)} output(s))", **evidence)
    listed = "; ".join(changes)
    if allow:
        return passed("signature", f"{len(changes)} breaking change(s) vs v{holder.version}, allowed: {listed}",
                      **evidence)
    return failed("signature", f"{len(changes)} breaking change(s) vs v{holder.version}: {listed}", **evidence)


def breaking_changes(old: Signature, new: Signature) -> list[str]:
    """What callers of ``old`` would see break with ``new``, one phrase each."""
    out = []
    old_in, new_in = {t.name: t for t in old.inputs}, {t.name: t for t in new.inputs}
    for name, t in old_in.items():
        n = new_in.get(name)
        if n is None:
            out.append(f"input {name!r} removed")
            continue
        if n.dtype != t.dtype:
            out.append(f"input {name!r} dtype {t.dtype} -> {n.dtype}")
        if not accepts(t.shape, n.shape):
            out.append(f"input {name!r} shape {_shape(t.shape)} -> {_shape(n.shape)}")
    out += [f"input {name!r} added" for name in new_in if name not in old_in]
    new_out = {t.name: t for t in new.outputs}
    for t in old.outputs:
        n = new_out.get(t.name)
        if n is None:
            out.append(f"output {t.name!r} removed")
        elif n.dtype != t.dtype:
            out.append(f"output {t.name!r} dtype {t.dtype} -> {n.dtype}")
    return out


def accepts(old: tuple[Dim, ...] | None, new: tuple[Dim, ...] | None) -> bool:
    """Whether an input of shape ``new`` takes everything one of shape ``old`` took (None: any shape;
    a dimension that is None or a name: any size)."""
    if new is None:
        return True
    if old is None or len(old) != len(new):
        return False
    return all(not isinstance(n, int) or n == o for o, n in zip(old, new, strict=True))


def _shape(shape: tuple[Dim, ...] | None) -> str:
    return "any" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
