"""Time-dependent three-branch guidance over references and text, with schedules parsed from text.

    v = v(∅,∅) + s_ref(t) · [v(∅,R) − v(∅,∅)] + s_txt(t) · [v(T,R) − v(∅,R)]

t runs from 1 (pure noise, the first step) to 0 (the last). Each scale is a :class:`Schedule`:

* ``"5"`` — constant;
* ``"linear:7.5:3"`` / ``"cosine:7.5:3"`` — from the first value at t = 1 to the second at t = 0;
* ``"interval:5:0.4:1"`` — 5 for t in [0.4, 1], else 1 (guidance only inside a noise interval; 1 means "no
  extra pull", the scale at which a branch cancels out);
* ``"0:7.5,0.6:5,1:3"`` — piecewise linear through (t, scale) knots, constant beyond the ends.

Written as weights, v = (1 − s_ref)·v(∅,∅) + (s_ref − s_txt)·v(∅,R) + s_txt·v(T,R): a branch whose weight
is 0 at a step is skipped there (s_ref = 1 drops v(∅,∅); s_ref = s_txt drops v(∅,R); s_txt = 0 drops
v(T,R)). :meth:`DynamicCFG.branches_at` says which are needed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from libragen.infer.sampler import Branch, Guidance

#: What ``libragen generate`` uses when references are given and neither scale nor schedule is, chosen by measurement
#: on the shipped LibraWorld S2V model (docs/results.md, "Choosing the default guidance"): of 11 schedule pairs, the
#: highest subject consistency + text alignment at ≤ 2 forwards per step, confirmed on 100 further prompts. Equal
#: reference and text scales drop the v(∅,R) branch: two rows per step, v(∅,∅) and v(T,R).
DEFAULT_REF_SCALE = "3"
DEFAULT_TEXT_SCALE = "3"
#: Text-only default: ordinary text CFG.
DEFAULT_TEXT_CFG = 4.0

UNCOND: Branch = (False, False)
REFS: Branch = (False, True)
FULL: Branch = (True, True)


class ScheduleError(ValueError):
    """A schedule string that cannot be read; the message says what was expected."""


@dataclass(frozen=True)
class Schedule:
    """A guidance scale as a function of t in [0, 1] (1 = noise), with the text it was parsed from."""

    text: str
    fn: Callable[[float], float]

    def __call__(self, t: float) -> float:
        return float(self.fn(min(1.0, max(0.0, t))))


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScheduleError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ScheduleError(f"{what}: {text!r} is not finite")
    return value


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule (see the module docstring); raise :class:`ScheduleError` with a clear message."""
    spec = text.strip()
    if not spec:
        raise ScheduleError("empty schedule: give a number, linear:A:B, cosine:A:B, interval:S:LO:HI or t:s,t:s,…")
    kind, _, rest = spec.partition(":")
    if "," in spec or (kind and _is_number(kind) and rest):
        return _piecewise(spec)
    if not rest:
        value = _number(spec, "constant schedule")
        return Schedule(spec, lambda t: value)
    parts = rest.split(":")
    if kind in ("linear", "cosine"):
        if len(parts) != 2:
            raise ScheduleError(f"{spec!r}: {kind} takes two values, e.g. {kind}:7.5:3 (at t=1, then at t=0)")
        start, end = (_number(p, f"{kind} schedule") for p in parts)
        if kind == "linear":
            return Schedule(spec, lambda t: end + (start - end) * t)
        return Schedule(spec, lambda t: end + (start - end) * (1 - math.cos(math.pi * t)) / 2)
    if kind == "interval":
        if len(parts) != 3:
            raise ScheduleError(f"{spec!r}: interval takes scale, low t, high t, e.g. interval:5:0.4:1")
        scale, low, high = (_number(p, "interval schedule") for p in parts)
        if not 0 <= low <= high <= 1:
            raise ScheduleError(f"{spec!r}: need 0 <= low <= high <= 1")
        return Schedule(spec, lambda t: scale if low <= t <= high else 1.0)
    raise ScheduleError(f"{spec!r}: unknown schedule kind {kind!r} (number, linear, cosine, interval or t:s,t:s)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _piecewise(spec: str) -> Schedule:
    knots = []
    for item in spec.split(","):
        t_text, sep, s_text = item.strip().partition(":")
        if not sep:
            raise ScheduleError(f"{spec!r}: piecewise knots are t:scale, e.g. 0:7.5,0.6:5,1:3")
        t, s = _number(t_text, "knot t"), _number(s_text, "knot scale")
        if not 0 <= t <= 1:
            raise ScheduleError(f"{spec!r}: knot t={t} is outside [0, 1]")
        knots.append((t, s))
    knots.sort()
    if len({t for t, _ in knots}) != len(knots):
        raise ScheduleError(f"{spec!r}: two knots at the same t")

    def value(t: float) -> float:
        if t <= knots[0][0]:
            return knots[0][1]
        for (t0, s0), (t1, s1) in itertools.pairwise(knots):
            if t <= t1:
                return s0 + (s1 - s0) * (t - t0) / (t1 - t0)
        return knots[-1][1]

    return Schedule(spec, value)


@dataclass
class DynamicCFG(Guidance):
    """Three-branch guidance with a reference scale and a text scale that change over t."""

    ref_scale: Schedule
    text_scale: Schedule

    @property
    def branches(self) -> tuple[Branch, ...]:  # type: ignore[override]
        return (UNCOND, REFS, FULL)

    def describe(self) -> str:
        return f"three-branch CFG: reference {self.ref_scale.text}, text {self.text_scale.text}"

    def weights(self, t: float) -> dict[Branch, float]:
        """v = (1 − s_ref)·v(∅,∅) + (s_ref − s_txt)·v(∅,R) + s_txt·v(T,R): each branch's weight at t."""
        s_ref, s_txt = self.ref_scale(t), self.text_scale(t)
        return {UNCOND: 1.0 - s_ref, REFS: s_ref - s_txt, FULL: s_txt}

    def branches_at(self, t: float) -> tuple[Branch, ...]:
        """Only the branches with a non-zero weight (the weights sum to 1, so at least one)."""
        return tuple(branch for branch, weight in self.weights(t).items() if weight != 0.0)

    def combine(self, t: float, velocities: dict[Branch, torch.Tensor]) -> torch.Tensor:
        terms = [weight * velocities[branch] for branch, weight in self.weights(t).items() if weight != 0.0]
        return torch.stack(terms).sum(0)
