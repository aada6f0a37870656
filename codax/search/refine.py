"""Derivation to a target FPS: the argmax design, with ops and widths moved one step at a time
until it just meets the target.

The lambda controller keeps the derived design near the target during the search, but the argmax
after the last step can sit above the target (slack: throughput the accuracy could have used) or
below it (the constraint missed; the argmax can flip between near-tied ops late in the search).

Accuracy is judged by the supernet (its accuracy on `val` of the single network, at its widths,
with the searched weights -- the one-shot estimate the search itself trains), throughput by the
cost model:
- a deficit is closed greedily: each step takes the op or width change that saves the most cycles
  per unit of supernet accuracy given up, the last one the smallest change that reaches the target
  among those the supernet does not find worse than the best such change (see `TargetFit.close`);
- ops that cost cycles without buying supernet accuracy are dropped first (free speed: e.g. a 5x5
  depthwise kernel on a 2x2 map, whose ring only ever sees padding, computes exactly what the
  shared 3x3 centre computes, but the accelerator still runs its 25 taps);
- slack is spent on measured accuracy: each step takes the op change or one-step wider layer
  (`search.spend_widths: supernet`, the default) that gains the most supernet accuracy (at least
  one more correct `val` image) per cycle added, while the target holds. A width is raised on the
  same evidence as an op, not by a prior: on digits (benchmarks/cosearch_vs_baselines.py) the
  same five blocks retrained at searched 4-6-bit widths were at least as accurate as at 6-8 bits,
  so slack a quantisation-noise prior spent on widths bought no accuracy. `searched` keeps the
  search's argmax widths (a closing step may still lower them); `noise` restores the prior: widths
  raised first, each step the width that removes the most quantisation noise (4^-b for a b-bit
  tensor; its traffic scales as b) per cycle added, and again after each op step;
- slack still left is spent on capacity: the op change that adds the most MACs while the target
  holds, computes a different function (not e.g. a 5x5 kernel whose ring only sees padding) and
  that the supernet does not find worse than the design the fitting started from (paired on the
  same `val` images: images lost minus images gained at most one standard error of that
  difference, sqrt(lost + gained)); with `noise`, widths again after each. Not the design the
  width / op steps reached: each of those steps took the best of some 35 moves by their noisy
  `val` counts, so that design's count is biased upwards on these very images (the winner's
  curse), and any change from it looks worse (on digits, 7 such steps left 20% of the throughput
  unspent and no capacity move passed); the starting design was not selected on them. The supernet's
  accuracy of a single network is a weak, noisy estimate (about 0.9 on `val` where the retrained
  network reaches about 0.98), it cannot tell such ops apart, and a network retrained from scratch
  tends to gain from capacity: throughput the target does not need is not left unused.

Moves are priced with the relaxed cost of the one-hot design (a contraction of cached tables),
rescaled to agree with the exact model at the latest exactly evaluated design; the resulting paths
are checked with the exact mapper and cost model (by bisection, a few evaluations each).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from codax.search.derive import Design

if TYPE_CHECKING:
    from codax.search.cosearch import CoSearch


def _key(d: Design) -> tuple:
    return (tuple(d.ops), tuple(d.bits))


def _noise(bits: tuple[int, int]) -> float:
    return 4.0 ** -bits[0] + 4.0 ** -bits[1]


class TargetFit:
    """Moves of one design's ops and widths, priced by the calibrated relaxed cost (see module doc)."""

    def __init__(self, cs: CoSearch, design: Design):
        self.cs = cs
        self.widths = sorted(cs.bits) if cs.cfg.bits.search else [max(cs.bits)]
        self.one_image = 1.0 / len(cs.data.val[1])
        self.spend_widths = cs.cfg.search.spend_widths
        self._logits: dict[tuple, torch.Tensor] = {}
        self._prefix: dict = {}  # supernet unit outputs by design prefix (weights frozen while fitting)
        self.calibrate(design)

    def units(self, d: Design) -> list[int]:
        """Units whose widths matter: searchable, with at least one layer in the chosen op."""
        return [
            u
            for u, unit in enumerate(self.cs.net.units)
            if unit.searchable and unit.ops[d.ops[u]].kind != "skip"
        ]

    def logits(self, d: Design):
        """The design's supernet logits on `val` (cached)."""
        k = _key(d)
        if k not in self._logits:
            self._logits[k] = self.cs.supernet_logits(d, prefix_cache=self._prefix)
        return self._logits[k]

    def correct(self, d: Design):
        """Per `val` image: classified correctly by the design inside the supernet."""
        return self.logits(d).argmax(1) == self.cs.data.val[1]

    def same_function(self, m: Design, d: Design) -> bool:
        """The two networks compute the same logits (e.g. a 5x5 depthwise kernel on a 2x2 map, whose
        ring only sees padding, and the 3x3 centre it shares): more MACs, no more capacity."""
        return bool(torch.allclose(self.logits(m), self.logits(d), rtol=1e-4, atol=1e-5))

    def acc(self, d: Design) -> float:
        """Supernet accuracy of the design on `val`."""
        return float(self.correct(d).float().mean())

    def not_worse(self, m: Design, ref: Design) -> bool:
        """The supernet does not find `m` worse than `ref`, paired on the same `val` images: images
        lost minus images gained at most one standard error of that difference."""
        cm, cr = self.correct(m), self.correct(ref)
        lost, gained = int((cr & ~cm).sum()), int((cm & ~cr).sum())
        return lost - gained <= (lost + gained) ** 0.5

    def macs(self, d: Design) -> float:
        return float(sum(self.cs.lt.macs[u, o] for u, o in enumerate(d.ops)))

    def relaxed_cycles(self, d: Design) -> float:
        return self.cs.relaxed_cycles(d)

    def calibrate(self, d: Design) -> float:
        """Exact FPS of `d`; the relaxed model is rescaled to agree with it at `d`."""
        ex = self.cs.exact(d)
        self.scale = ex["exact_cycles"] / self.relaxed_cycles(d)
        return ex["exact_fps"]

    def fps(self, d: Design) -> float:
        return self.cs.space.base.clock_mhz * 1e6 / (self.relaxed_cycles(d) * self.scale)

    def width_moves(self, d: Design, up: bool) -> list[Design]:
        out = []
        for u in self.units(d):
            for k in (0, 1):  # weight, activation
                i = self.widths.index(d.bits[u][k]) + (1 if up else -1)
                if 0 <= i < len(self.widths):
                    b = list(d.bits[u])
                    b[k] = self.widths[i]
                    bits = list(d.bits)
                    bits[u] = (b[0], b[1])
                    out.append(replace(d, bits=bits))
        return out

    def op_moves(self, d: Design) -> list[Design]:
        out = []
        for u, unit in enumerate(self.cs.net.units):
            if unit.searchable:
                for o in range(len(unit.ops)):
                    if o != d.ops[u]:
                        ops = list(d.ops)
                        ops[u] = o
                        out.append(replace(d, ops=ops))
        return out

    def noise(self, d: Design) -> float:
        return sum(_noise(d.bits[u]) for u in self.units(d))

    def spend(self, d: Design, target: float, op_rounds: int = 12, fill_rounds: int = 6) -> list[Design]:
        """Ops and widths that gain supernet accuracy, then capacity, one step at a time while the
        calibrated FPS stays >= target (`spend_widths`: see the module doc): the path
        (`self.capacity_at`: the indices of its capacity steps)."""
        path = [d] + self._prune(d)
        for _ in range(op_rounds + 1):
            path += self._spend_widths(path[-1], target)
            d = path[-1]
            c0, a0 = self.relaxed_cycles(d), self.acc(d)
            best, score = None, 0.0
            wider = self.width_moves(d, up=True) if self.spend_widths == "supernet" else []
            for m in self.op_moves(d) + wider:
                gain = self.acc(m) - a0
                if gain < self.one_image - 1e-9 or self.fps(m) < target:
                    continue
                s = gain / max(self.relaxed_cycles(m) - c0, 1.0)
                if s > score:
                    best, score = m, s
            if best is None:
                break
            path.append(best)
        self.capacity_at, ref = [], path[0]  # unselected on `val` (see the module doc)
        for _ in range(fill_rounds):
            d = path[-1]
            m0, best = self.macs(d), None
            for m in self.op_moves(d):
                if self.macs(m) <= m0 or self.fps(m) < target or not self.not_worse(m, ref):
                    continue
                if self.same_function(m, d):
                    continue
                if best is None or (self.macs(m), self.acc(m)) > (self.macs(best), self.acc(best)):
                    best = m
            if best is None:
                break
            self.capacity_at.append(len(path))
            path.append(best)
            path += self._spend_widths(best, target)
        return path

    @staticmethod
    def _walk(d: Design, step) -> list[Design]:
        """The greedy path from `d`: step(design) gives the next design, or None to stop."""
        path = []
        while (d := step(d)) is not None:
            path.append(d)
        return path

    def _prune(self, d: Design) -> list[Design]:
        """Op changes that save cycles at no loss of supernet accuracy, most cycles first."""

        def step(d: Design) -> Design | None:
            c0, a0 = self.relaxed_cycles(d), self.acc(d)
            best, most = None, 0.0
            for m in self.op_moves(d):
                saved = c0 - self.relaxed_cycles(m)
                if saved > most and self.acc(m) >= a0:
                    best, most = m, saved
            return best

        return self._walk(d, step)

    def _spend_widths(self, d: Design, target: float) -> list[Design]:
        if self.spend_widths != "noise":
            return []

        def step(d: Design) -> Design | None:
            c0, n0 = self.relaxed_cycles(d), self.noise(d)
            best, score = None, -1.0
            for m in self.width_moves(d, up=True):
                if self.fps(m) < target:
                    continue
                s = (n0 - self.noise(m)) / max(self.relaxed_cycles(m) - c0, 1e-9)
                if s > score:
                    best, score = m, s
            return best

        return self._walk(d, step)

    def close(self, d: Design, target: float) -> list[Design]:
        """Ops changed / widths lowered one at a time until the calibrated FPS reaches the target
        (or nothing is faster), giving up the least supernet accuracy per cycle saved: the path.
        The last step is the smallest: when single moves reach the target, the one that saves the
        fewest cycles among those the supernet does not find worse than the most accurate of them
        (a greedy step sized for a large deficit would overshoot a small one, and what it gives up
        beyond the target is only partly bought back by the spend)."""
        path = [d]
        while self.fps(d) < target:
            c0, a0 = self.relaxed_cycles(d), self.acc(d)
            best, score, closers = None, 0.0, []
            for m in self.op_moves(d) + self.width_moves(d, up=False):
                saved = c0 - self.relaxed_cycles(m)
                if saved <= 0:
                    continue
                if self.fps(m) >= target:
                    closers.append((saved, m))
                s = saved / max(a0 - self.acc(m), self.one_image / 2)
                if s > score:
                    best, score = m, s
            if closers:
                top = max(closers, key=lambda t: (self.acc(t[1]), -t[0]))[1]
                best = min((t for t in closers if self.not_worse(t[1], top)), key=lambda t: t[0])[1]
            if best is None:
                return path
            d = best
            path.append(d)
        return path


def _first(path: list[Design], ok) -> int | None:
    """Index of the first design on `path` with ok(design), by bisection (ok is taken monotone
    along the path: FPS falls along a spend path -- after its pruning steps, which only raise it --
    and rises along a close path)."""
    if not ok(path[-1]):
        return None
    lo, hi = 0, len(path) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(path[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fit_to_target(cs: CoSearch, design: Design, target_fps: float, rounds: int = 3) -> tuple[Design, dict]:
    """`design` moved to just meet `target_fps` in the exact model.

    Close (when it misses the target): follow the close path, recalibrating at its end until the
    end meets the target exactly (at most `rounds` times), then take the first point of the path
    that does. Spend: follow the spend path from there and take its last point that still meets the
    target exactly. Exact checks bisect the paths. When no design meets the target, the fastest one
    reached is returned (`meets_target` false)."""
    fit = TargetFit(cs, design)
    exact = {}

    def fps(d: Design) -> float:
        if _key(d) not in exact:
            exact[_key(d)] = cs.exact(d)["exact_fps"]
        return exact[_key(d)]

    def meets(d: Design) -> bool:
        return fps(d) >= target_fps

    d, closed, filled = design, 0, 0
    while not meets(d) and closed < rounds:
        fit.calibrate(d)
        path = fit.close(d, target_fps)
        i = _first(path, meets)
        closed += 1
        if i is not None:
            d = path[i]
        elif path[-1] is d:
            break  # nothing is faster
        else:
            d = path[-1]
    spent = 0
    if meets(d):
        fit.calibrate(d)
        forward = fit.spend(d, target_fps)
        path = forward[::-1]  # most spent first
        d = path[_first(path, meets)]
        spent = len(path) - 1 - path.index(d)
        filled = sum(1 for i in fit.capacity_at if i <= spent)
    return d, {
        "target_fps": target_fps,
        "start": design.to_dict(cs.net, cs.space)["units"],
        "design": d.to_dict(cs.net, cs.space)["units"],
        "exact_fps": fps(d),
        "meets_target": meets(d),
        "close_rounds": closed,
        "spend_steps": spent,
        "capacity_steps": filled,
        "exact_evaluations": len(exact),
    }
