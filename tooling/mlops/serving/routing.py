"""Traffic split and mirroring inside the server: no proxy hop, a counter and a precomputed cycle.

Weights are turned once into a cycle by smooth weighted round-robin (nginx's): for 90/10 the
cycle is 10 long and the 10% deployment is spread evenly in it, never bunched. Each request takes
the next slot. Mirroring picks ``percent`` of requests evenly the same way (a Bresenham-like step).
"""

from __future__ import annotations

from math import gcd

_MAX_CYCLE = 10_000


def cycle(weights: dict[str, int]) -> tuple[str, ...]:
    """The smooth weighted round-robin order of ``weights`` (names with weight 0 never appear)."""
    live = {n: w for n, w in weights.items() if w > 0}
    if not live:
        return ()
    g = 0
    for w in live.values():
        g = gcd(g, w)
    scaled = {n: w // g for n, w in live.items()}
    total = sum(scaled.values())
    if total > _MAX_CYCLE:  # keep the cycle small: proportions to 1 in 10,000 are plenty
        scaled = {n: max(1, round(w * _MAX_CYCLE / total)) for n, w in scaled.items()}
        total = sum(scaled.values())
    current = dict.fromkeys(scaled, 0)
    order = []
    for _ in range(total):
        for n, w in scaled.items():
            current[n] += w
        best = max(current, key=lambda n: current[n])
        current[best] -= total
        order.append(best)
    return tuple(order)


class Router:
    """Picks the deployment of each unpinned request, and whether to mirror it."""

    __slots__ = ("order", "i", "mirror_to", "percent", "acc")

    def __init__(self, weights: dict[str, int], mirror: dict[str, object] | None):
        self.order = cycle(weights)
        self.i = 0
        self.mirror_to = str(mirror["deployment"]) if mirror else None
        self.percent = float(mirror["percent"]) if mirror else 0.0  # type: ignore[arg-type]
        self.acc = 0.0

    def pick(self) -> str | None:
        """The next deployment in the cycle; None when every weight is 0."""
        order = self.order
        if not order:
            return None
        i = self.i
        self.i = i + 1 if i + 1 < len(order) else 0
        return order[i]

    def mirror(self, served_by: str) -> str | None:
        """The shadow deployment when this request is one of the mirrored ``percent``."""
        if self.mirror_to is None or served_by == self.mirror_to:
            return None
        self.acc += self.percent
        if self.acc >= 100.0:
            self.acc -= 100.0
            return self.mirror_to
        return None
