"""Rolling an endpoint from its live state to its desired state: all at once, blue-green or canary,
judged on live metrics with automatic rollback (Argo Rollouts' strategies, without a controller).

What rolls out gradually is a *changed* deployment: one present in both states, taking traffic, whose
model, version, file or options differ (a promotion moved the ``MODEL@STAGE`` pin it follows, say).
Everything else (a new endpoint, new or removed deployments, a new traffic split or mirror, a
deployment with no traffic) has nothing to compare with and goes all at once, as does every change
under ``strategy: all-at-once``.

canary (``steps`` such as [10, 50, 100], each held ``interval_seconds``)
    The new version of deployment D runs beside the old one in the same endpoint, in a temporary slot
    ``D-canary``. Each step gives the slot that percentage of D's weight (blue 100 -> blue 90 +
    blue-canary 10 -> ...) and judges the slot's metrics over the step's window
    (``mlops.deploy.analysis``). After the last step: promotion.
blue-green
    The new version starts in a slot ``D-preview`` with no traffic, and the endpoint mirrors its
    requests to it for one window (the mirror's answers are discarded; the preview's metrics count
    them), one changed deployment after another. Judged good, traffic switches to the previews at
    once; the old version stays loaded, idle, while the previews are judged once more on the real
    traffic for one window (a failure switches back at once), then promotion.
promotion (no request is dropped on the way)
    D's weight all on the slot; D itself reloaded with the new version while it has no traffic; the
    weight back on D; the slot removed with the rest of the desired state applied.
rollback (a failed or inconclusive analysis, or a target that failed mid-way)
    The slot's weight goes back to D at once, then the previous state is applied again (the slot
    removed). The result is ``rolled_back``, with the measurements that decided it.

Crash safety: a rollout killed mid-way leaves its slot in the live state. The next run recognises a
live deployment that the desired state does not declare, named ``D-canary``/``D-preview`` beside a
live D, as a leftover: its weight is given back to D and the result is the *stable* state the
rollout starts from (and would roll back to). So an interrupted canary starts again from its first
step (its version earns its traffic again), and one interrupted during promotion, where D already
serves the new version, finishes all at once. Idempotent: a live state equal to the desired one
(``EndpointState.digest``) does nothing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlops.deploy.analysis import Criteria, Observation, observe
from mlops.deploy.protocol import EndpointState
from mlops.errors import DeployError, MlopsError

if TYPE_CHECKING:
    from mlops.deploy.protocol import Target
    from mlops.store.protocol import ArtifactStore

STRATEGIES = ("all-at-once", "blue-green", "canary")
SLOT_SUFFIXES = {"canary": "-canary", "blue-green": "-preview"}
DEFAULT_STEPS = (10, 50, 100)
DEFAULT_INTERVAL = 30.0

Event = Callable[[str, dict[str, Any]], None]
StateChange = Callable[["EndpointState | None", EndpointState], None]


@dataclass
class RolloutResult:
    """``status`` is succeeded, failed or rolled_back; ``steps`` what was done, in order (JSON-ready
    dicts with ``step``, ``at`` (UTC), ``traffic`` and, for a judged step, ``weight`` and ``analysis``);
    ``reason`` one line."""

    status: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""


@dataclass(frozen=True)
class Strategy:
    """An endpoint's ``rollout`` mapping, checked."""

    name: str = "all-at-once"
    steps: tuple[int, ...] = DEFAULT_STEPS
    interval: float = DEFAULT_INTERVAL
    criteria: Criteria | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Strategy:
        """The strategy of a ``rollout`` mapping (empty: all at once); DeployError naming the field
        when a value is not what the endpoint schema allows."""
        if not spec:
            return cls()
        if not isinstance(spec, Mapping):
            raise DeployError(f"rollout: expected a mapping, got {type(spec).__name__}")
        name = spec.get("strategy", "all-at-once")
        if name not in STRATEGIES:
            raise DeployError(f"rollout.strategy: expected one of {', '.join(STRATEGIES)}, got {name!r}")
        steps = spec.get("steps", DEFAULT_STEPS)
        if not isinstance(steps, (list, tuple)) or not steps \
                or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 100 for s in steps) \
                or list(steps) != sorted(set(steps)):
            raise DeployError(f"rollout.steps: expected percentages from 1 to 100 that increase strictly, "
                              f"got {steps!r}")
        interval = spec.get("interval_seconds", DEFAULT_INTERVAL)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval < math.inf:
            raise DeployError(f"rollout.interval_seconds: expected a number of seconds >= 0, got {interval!r}")
        return cls(name, tuple(steps), float(interval), Criteria.from_spec(spec.get("analysis")))


def roll_out(target: Target, desired: EndpointState, live: EndpointState | None, rollout_spec: dict[str, Any],
             store: ArtifactStore, *, echo: Callable[[str], None] = print,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
             on_event: Event | None = None, on_state: StateChange | None = None) -> RolloutResult:
    """Converge ``target`` from ``live`` to ``desired`` by the endpoint's ``rollout_spec`` (see the
    module docstring). ``echo`` gets one line per step; ``sleep``/``clock`` are the analysis' time
    (tests pass fakes). ``on_event(kind, data)`` is called with ``deployment.started`` before the first
    change and ``deployment.succeeded`` or ``deployment.rolled_back`` at the end (data: endpoint,
    target, strategy, changes, traffic, reason and, for a rollback, the deciding analysis).
    ``on_state(before, after)`` is called after every change the target made (each traffic step
    included), so the caller can record what served when. Neither callback may raise. A target's
    failure is a result (``failed``, or ``rolled_back`` when the previous state could be restored)."""
    if live is not None and live.digest() == desired.digest():
        echo(f"  {desired.endpoint}: live already matches the desired state")
        return RolloutResult("succeeded", [], "live already matches the desired state")
    try:
        strategy = Strategy.from_spec(rollout_spec)
    except DeployError as e:
        return RolloutResult("failed", [], f"endpoint {desired.endpoint}: {e}")
    return _Rollout(target, desired, live, store, echo, sleep, clock, on_event, on_state).run(strategy)


def stable_state(live: EndpointState, desired: EndpointState) -> EndpointState:
    """``live`` without the slots an interrupted rollout left (see the module docstring): each
    leftover's weight goes back to its deployment, a mirror onto one goes back to the desired mirror
    (or none)."""
    wanted = {d.name for d in desired.deployments}
    present = {d.name for d in live.deployments}
    leftovers: dict[str, str] = {}
    for d in live.deployments:
        for suffix in SLOT_SUFFIXES.values():
            base = d.name.removesuffix(suffix)
            if d.name not in wanted and d.name.endswith(suffix) and base in present:
                leftovers[d.name] = base
    if not leftovers:
        return live
    traffic = {k: v for k, v in live.traffic.items() if k not in leftovers}
    for slot, base in leftovers.items():
        traffic[base] = traffic.get(base, 0) + live.traffic.get(slot, 0)
    kept = tuple(d for d in live.deployments if d.name not in leftovers)
    mirror = live.mirror
    if mirror and mirror.get("deployment") in leftovers:
        mirror = desired.mirror if desired.mirror and desired.mirror.get("deployment") in present else None
    return dataclasses.replace(live, deployments=kept, traffic=traffic, mirror=mirror)


def split(traffic: Mapping[str, int], slots: Mapping[str, str], percent: int) -> dict[str, int]:
    """``traffic`` with ``percent`` of each deployment's weight moved to its slot (``slots``: deployment
    -> slot name). A slot of a deployment with weight gets at least 1, so it is measured at all."""
    out = dict(traffic)
    for base, slot in slots.items():
        weight = traffic.get(base, 0)
        moved = min(weight, max(1, math.floor(weight * percent / 100 + 0.5))) if weight and percent else 0
        out[base] = weight - moved
        out[slot] = moved
    return out


def changes(live: EndpointState | None, desired: EndpointState) -> list[dict[str, Any]]:
    """The deployments that differ between ``live`` and ``desired``: created, changed or removed
    (``to_version`` None), with the model and version before and after, for events and echo."""
    old = {d.name: d for d in live.deployments} if live is not None else {}
    new = {d.name: d for d in desired.deployments}
    out: list[dict[str, Any]] = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        out.append({"deployment": name,
                    "model": after.model if after else before.model if before else None,
                    "from_version": before.version if before else None,
                    "to_version": after.version if after else None})
    return out


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _show(traffic: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(traffic.items())) or "no traffic"


class _Rollout:
    """One rollout of one endpoint: the target calls, the record of steps, the events."""

    def __init__(self, target: Target, desired: EndpointState, live: EndpointState | None, store: ArtifactStore,
                 echo: Callable[[str], None], sleep: Callable[[float], None], clock: Callable[[], float],
                 on_event: Event | None, on_state: StateChange | None) -> None:
        self.target, self.desired, self.live, self.store = target, desired, live, store
        self.echo, self.sleep, self.clock = echo, sleep, clock
        self.on_event, self.on_state = on_event, on_state
        self.current = live
        self.steps: list[dict[str, Any]] = []
        self.strategy = Strategy()
        self.changes: list[dict[str, Any]] = []

    # -- the strategies --------------------------------------------------------------------------
    def run(self, strategy: Strategy) -> RolloutResult:
        self.strategy = strategy
        self.changes = changes(self.live, self.desired)
        if self.live is None:
            return self.all_at_once("new endpoint")
        base = stable_state(self.live, self.desired)
        changed = [d for d in self.desired.deployments
                   if (old := base.deployment(d.name)) is not None and old != d and base.traffic.get(d.name, 0) > 0]
        if strategy.name == "all-at-once":
            return self.all_at_once("strategy all-at-once")
        if not changed:
            return self.all_at_once("no changed deployment takes traffic" if base is self.live
                                    else "finishing an interrupted rollout")
        suffix = SLOT_SUFFIXES[strategy.name]
        slots = {d.name: d.name + suffix for d in changed}
        taken = sorted(set(slots.values()) & {d.name for d in self.desired.deployments})
        if taken:
            return RolloutResult("failed", [], f"endpoint {self.desired.endpoint}: deployment {taken[0]} is "
                                               f"declared, but {strategy.name} needs that name for a temporary "
                                               f"slot: rename the deployment")
        news = tuple(dataclasses.replace(d, name=slots[d.name]) for d in changed)
        with_slots = dataclasses.replace(base, deployments=base.deployments + news)
        how = f"canary {' -> '.join(map(str, strategy.steps))}" if strategy.name == "canary" else "blue-green"
        self.event("deployment.started", how)
        if base is not self.live:
            self.echo(f"  {self.desired.endpoint}: an interrupted rollout left "
                      f"{_show({k: v for k, v in self.live.traffic.items() if k not in base.traffic})}: "
                      f"starting again from {_show(base.traffic)}")
        try:
            if strategy.name == "canary":
                failed = self.canary(base, with_slots, slots)
            else:
                failed = self.blue_green(base, with_slots, slots)
            if failed is not None:
                return self.rollback(base, slots, *failed)
            self.promote(with_slots, slots, base.traffic)
        except MlopsError as e:
            return self.rollback(base, slots, f"the target failed: {e}", None)
        moved = ", ".join(slots)
        return self.succeeded(f"{how} passed its analysis: {moved} now serve{'s' if len(slots) == 1 else ''} "
                              f"the new version")

    def all_at_once(self, why: str) -> RolloutResult:
        self.event("deployment.started", why)
        try:
            self.apply(self.desired, "apply", f"all at once ({why})")
        except MlopsError as e:
            if self.live is None:
                return RolloutResult("failed", self.steps, f"applying {self.desired.endpoint} failed: {e}")
            return self.rollback(self.live, {}, f"applying the desired state failed: {e}", None)
        return self.succeeded(f"applied all at once ({why})")

    def canary(self, base: EndpointState, with_slots: EndpointState,
               slots: dict[str, str]) -> tuple[str, Observation] | None:
        """Each step's traffic, judged; (reason, observation) of the step that failed, or None."""
        for i, percent in enumerate(self.strategy.steps):
            traffic = split(base.traffic, slots, percent)
            label = f"canary {percent}%"
            if i == 0:
                self.apply(dataclasses.replace(with_slots, traffic=traffic), "canary", label, weight=percent)
            else:
                self.set_traffic(traffic, "canary", label, weight=percent)
            failed = self.analyse(list(slots.values()), label)
            if failed is not None:
                return failed
        return None

    def blue_green(self, base: EndpointState, with_slots: EndpointState,
                   slots: dict[str, str]) -> tuple[str, Observation] | None:
        """Each preview judged on mirrored requests, then the switch; as ``canary``."""
        idle = split(base.traffic, slots, 0)
        for slot in slots.values():
            mirrored = dataclasses.replace(with_slots, traffic=idle, mirror={"deployment": slot, "percent": 100})
            self.apply(mirrored, "preview", f"preview {slot} (no traffic, requests mirrored to it)")
            failed = self.analyse([slot], f"preview {slot}")
            if failed is not None:
                return failed
        switched = dataclasses.replace(with_slots, traffic=split(base.traffic, slots, 100), mirror=base.mirror)
        self.apply(switched, "switch", "switch: all traffic to the preview at once")
        # Argo Rollouts' post-promotion analysis: the old version still runs, idle, for one more window,
        # so real traffic that the mirror did not show (writes, a client's retries) can still undo the switch.
        return self.analyse(list(slots.values()), "after the switch")

    def promote(self, with_slots: EndpointState, slots: dict[str, str], weights: Mapping[str, int]) -> None:
        """Fold each slot back into its deployment without a dropped request, then apply the rest."""
        full = split(weights, slots, 100)
        if self.current is None or self.current.traffic != full:
            self.set_traffic(full, "promote", "promote: the new version takes all its traffic")
        upgraded = dataclasses.replace(
            with_slots, traffic=full,
            deployments=tuple((self.desired.deployment(d.name) or d) if d.name in slots else d
                              for d in with_slots.deployments))
        self.apply(upgraded, "promote", "promote: the deployments reload the new version while they have no traffic")
        self.set_traffic(split(weights, slots, 0), "promote", "promote: traffic back to the deployments")
        self.apply(self.desired, "apply", "the desired state, temporary slots removed")

    def rollback(self, previous: EndpointState, slots: dict[str, str], reason: str,
                 observation: Observation | None) -> RolloutResult:
        """Back to ``previous``: first no traffic to the slots, then the previous state applied."""
        self.echo(f"  {self.desired.endpoint}: rolling back" + ("" if observation is not None else f": {reason}"))
        if self.current is not None and any(self.current.traffic.get(slot, 0) for slot in slots.values()):
            try:
                self.set_traffic(split(previous.traffic, slots, 0), "rollback", "rollback: no traffic to the new version")
            except MlopsError as e:
                self.echo(f"  {self.desired.endpoint}: could not take the traffic off first ({e}); restoring")
        try:
            self.apply(previous, "rollback", "rollback: the previous state")
        except MlopsError as e:
            return RolloutResult("failed", self.steps, f"{reason}; the rollback failed too: {e}")
        self.event("deployment.rolled_back", reason, observation)
        return RolloutResult("rolled_back", self.steps, reason)

    def succeeded(self, reason: str) -> RolloutResult:
        self.event("deployment.succeeded", reason)
        return RolloutResult("succeeded", self.steps, reason)

    # -- one step each ---------------------------------------------------------------------------
    def analyse(self, names: list[str], label: str) -> tuple[str, Observation] | None:
        strategy = self.strategy
        endpoint = self.desired.endpoint
        observation = observe(lambda: self.target.metrics(endpoint), names, strategy.criteria, strategy.interval,
                              clock=self.clock, sleep=self.sleep)
        verdict = observation.verdict
        self.steps[-1]["analysis"] = observation.to_dict()
        self.echo(f"  {endpoint}: {label}: {verdict.outcome} after {observation.elapsed:.1f} s"
                  f"{': ' + verdict.reason if verdict.reason else ''}")
        if verdict.outcome == "fail":
            return f"{label} failed its analysis: {verdict.reason}", observation
        if verdict.outcome == "inconclusive":
            if strategy.criteria is not None and strategy.criteria.inconclusive == "promote":
                self.echo(f"  {endpoint}: {label}: inconclusive, going on (analysis.inconclusive: promote)")
                return None
            return f"{label} was inconclusive: {verdict.reason} (analysis.inconclusive: rollback)", observation
        return None

    def apply(self, state: EndpointState, step: str, label: str, **extra: Any) -> None:
        before = self.current
        self.steps.append({"step": step, "at": _now(), "traffic": dict(state.traffic), **extra})
        self.echo(f"  {self.desired.endpoint}: {label}: {_show(state.traffic)}")
        self.current = self.target.apply(state, self.store)
        if self.on_state is not None:
            self.on_state(before, self.current)

    def set_traffic(self, traffic: dict[str, int], step: str, label: str, **extra: Any) -> None:
        before = self.current
        self.steps.append({"step": step, "at": _now(), "traffic": dict(traffic), **extra})
        self.echo(f"  {self.desired.endpoint}: {label}: {_show(traffic)}")
        self.target.set_traffic(self.desired.endpoint, traffic)
        if before is not None:
            self.current = dataclasses.replace(before, traffic=dict(traffic))
            if self.on_state is not None:
                self.on_state(before, self.current)

    def event(self, kind: str, reason: str, observation: Observation | None = None) -> None:
        if self.on_event is None:
            return
        data: dict[str, Any] = {"endpoint": self.desired.endpoint, "target": self.desired.target,
                                "strategy": self.strategy.name, "changes": self.changes,
                                "traffic": dict((self.current or self.desired).traffic), "reason": reason}
        if observation is not None:
            data["analysis"] = observation.to_dict()
        self.on_event(kind, data)
