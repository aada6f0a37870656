"""Differentiable network / bitwidth / accelerator co-search (DNA, DANCE, Auto-NBA style).

Bi-level, DARTS/FBNet style: supernet weights train on the `train` split with soft Gumbel mixing of
bitwidths; op, bit, mapping and accelerator logits train on the `val` split with
    loss = CE + lambda * E[hardware cost] / reference + penalty(resources over budget),
where the weight step trains one sampled op per block with soft Gumbel mixing of bitwidths and the
architecture step samples a pair of ops and of widths per block (Auto-NBA's heterogeneous sampling,
two paths' memory), the task loss and the hardware term both through the pair's gates
(sampling.py: unbiased, and no gradient outside the pair); `search.op_sampling: soft` mixes all
ops (FBNet). The samples come from the search's own generator (the same on every data-parallel
rank). With a target FPS, lambda is the multiplier of that constraint, adapted by dual ascent
(lambda_update). The exact mapper evaluates the derived design
every epoch (or every `exact_every` steps) and the relaxed-vs-exact gap is logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codax.errors import ConfigError
from codax.search import ddp
from codax.search.acceldist import AccelDist, expected_term, score_loss
from codax.search.arch import ArchParams
from codax.search.config import SearchConfig, load_config
from codax.search.data import Splits, load_data
from codax.search.derive import Design, build_graph, exact_cost
from codax.search.hwcost import LayerTable
from codax.search.objective import HardwareObjective, HwEstimate, budget_of
from codax.search.ranking import one_se_pick, standard_error
from codax.search.sampling import PathSampler, onehot, pair_gates, run_mask
from codax.search.scoring import brief_accuracy
from codax.search.space import build_accel_space, build_accelerator, build_network_space
from codax.search.supernet import Supernet

PREFIX_CACHE_ENTRIES = 512  # unit outputs kept by supernet_logits' prefix cache (tens of MB on digits)
EVAL_BATCH = 256  # images per batch-statistics forward when a split is read lazily
DERIVE_SEED = 10_000  # first training seed of the derivation's ranking (disjoint from 0, 1, ...)


@dataclass
class SearchResult:
    out_dir: Path
    summary: dict
    design: Design
    history: list[dict]


@contextlib.contextmanager
def batch_stats(model: torch.nn.Module):
    """Evaluate with batch statistics without touching running stats: the supernet's BN running
    stats describe the op mixture, not the argmax network."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [(m.momentum, m.training) for m in bns]
    was = model.training
    model.train()
    for m in bns:
        m.momentum = 0.0
    try:
        with torch.no_grad():
            yield
    finally:
        for m, (mom, _) in zip(bns, saved):
            m.momentum = mom
        model.train(was)


@contextlib.contextmanager
def frozen(model: torch.nn.Module):
    """Parameters that need no gradient while the graph is built: backward then computes only the
    inputs' gradients (the architecture step's path to the logits), neither the weight gradients'
    convolutions nor their buffers."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class CoSearch:
    """State of one search: data, spaces, supernet, logits, optimisers, lambda, history."""

    def __init__(self, cfg: SearchConfig | dict, device: torch.device | None = None):
        cfg = cfg if isinstance(cfg, SearchConfig) else load_config(cfg)
        self.cfg = cfg
        s = cfg.search
        self.seed = int(cfg.seed)
        _seed_all(self.seed)
        self.device = device or ddp.pick_device()
        self.rank, self.world = ddp.rank_world()
        self.data: Splits = load_data(cfg, self.seed)
        self.net = build_network_space(cfg, self.data.shape, self.data.num_classes)
        self.space = build_accel_space(cfg)
        self.bits = list(cfg.bits.choices)
        self.lt = LayerTable(self.net, self.bits)
        self.budget = budget_of(cfg, self.space)
        self.chunks = int(cfg.accelerator.chunks)
        self.objective = s.objective
        self.pair_ops = s.op_sampling == "pair"
        self.sampler = PathSampler(self.seed)  # architecture samples: the same stream on every rank
        # mapping templates are a choice (one logit per template); the mapper's tables hold one mapping
        # per layer and point, so there is nothing for mapping logits to choose and none are made
        m_count = int(s.mapping_candidates) if s.relaxed_cost == "templates" else 1
        self.hw = HardwareObjective(
            self.net,
            self.space,
            self.lt,
            self.chunks,
            self.budget,
            m_count,
            s.relaxed,
            s.penalty,
            s.objective if s.relaxed_cost == "mapper" else None,
        )
        self.hw.check_feasible()
        self.accel_dist = AccelDist(self.hw.feasible_points())
        self.known_points: list[int] = []  # accelerator points drawn so far (hw_term)
        fl = cfg.bits.first_last
        fixed_idx = self.bits.index(fl) if fl in self.bits else len(self.bits) - 1
        fixed_bits = [None if u.searchable else fixed_idx for u in self.net.units]
        self.supernet = Supernet(self.net, self.bits, bool(cfg.network.share_weights), s.recompute).to(
            self.device
        )
        self.arch = ArchParams(
            self.net,
            self.space,
            len(self.bits),
            self.chunks,
            m_count,
            fixed_bits,
            bool(cfg.bits.search),
        ).to(self.device)
        self.w_opt = torch.optim.SGD(
            self.supernet.parameters(),
            lr=s.w_lr,
            momentum=s.w_momentum,
            weight_decay=s.w_weight_decay,
        )
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=s.epochs)
        self.a_opt = torch.optim.Adam(self.arch.parameters(), lr=s.a_lr, betas=(0.5, 0.999))
        self.lam = float(s.lambda_)
        # exact / relaxed cycles of the latest exactly evaluated derived design: the lambda controller
        # divides the relaxed FPS by this before comparing it with the target (an exact-model FPS)
        self.cycle_calib = 1.0
        self.epoch = 0  # completed epochs
        self.history: list[dict] = []
        self.exact_log: list[dict] = []
        self.step = 0
        self._exact_cache: dict = {}
        self.surrogate_report: dict | None = None
        self.surrogate_model = None
        if s.cost == "surrogate":  # DANCE: the hardware term through an MLP trained on the cost oracle
            from codax.search.surrogate import fit_surrogate

            self.hw.surrogate, self.surrogate_model, self.surrogate_report = fit_surrogate(self)
        with torch.no_grad():
            self.ref = {
                k: float(v)
                for k, v in self.estimate(None).__dict__.items()
                if k in ("period_cycles", "energy_pj", "macs")
            }
            self.ref["cycles"] = float(self.estimate(None).cycles)

    # --- hardware ---------------------------------------------------------------------------------
    def estimate(
        self,
        op_w: torch.Tensor | None = None,
        bw=None,
        ba=None,
        onehot_design: Design | None = None,
        points: list[tuple] | None = None,
    ) -> HwEstimate:
        """The hardware cost of the given op / bit weights (None: the logits' softmax) on accelerator
        `points` (None: the most probable point that fits, the one `design()` derives), or of one
        design (`onehot_design`: its ops, widths and accelerator points). Not differentiable in the
        accelerator logits: `hw_term` is."""
        a = self.arch
        pm = a.map_probs()
        if onehot_design is not None:
            d = onehot_design
            U, O = a.alpha.shape
            nb, dev = len(self.bits), self.device
            op_w = F.one_hot(torch.tensor(d.ops), O).float().to(dev)
            bw = F.one_hot(torch.tensor([self.bits.index(b[0]) for b in d.bits]), nb).float().to(dev)
            ba = F.one_hot(torch.tensor([self.bits.index(b[1]) for b in d.bits]), nb).float().to(dev)
            pm = F.one_hot(a.map_logits.argmax(-1), a.map_logits.shape[-1]).float()
            points = [tuple(d.accel)]
        if op_w is None:
            op_w, bw, ba = a.op_probs(), a.bit_probs("w"), a.bit_probs("a")
        if points is None:
            points = [tuple(self.design_accel())]
        return self.hw(op_w, bw, ba, pm, points)

    def hw_term(
        self, op_w: torch.Tensor, bw: torch.Tensor, ba: torch.Tensor
    ) -> tuple[torch.Tensor, HwEstimate]:
        """(hardware term of the loss, the estimate it was computed from): E_P[hw] over the
        accelerator distribution P (acceldist.py) of the network the weights mix, differentiable in
        the op / bit weights and the accelerator logits: the points with cached tables exactly
        (all of them when one engine has at most `search.accel_exact` fitting points; in surrogate
        mode up to surrogate.EXACT_POINTS), the others through `search.accel_samples` points drawn
        from P (with several engines: all through the draws). The estimate returned is at the points
        this call evaluated beyond those entered exactly: with one engine the draws and their
        fitting neighbours (each draw with one block of its choices changed, acceldist.term_at),
        else, when all of them were entered exactly already, at those (all fitting points when
        nothing is drawn); with several engines at the draws."""
        a, s = self.arch, self.cfg.search
        if self.space.fixed is not None:
            est = self.hw(op_w, bw, ba, a.map_probs(), [tuple([self.space.fixed] * self.chunks)])
            return self.hw_value(est)[0] + est.penalty[0], est
        dist = self.accel_dist
        logits = [a.accel_logits(e) for e in range(self.chunks)]
        n = int(s.accel_samples)
        if self.chunks == 1:  # the points with cached tables exactly, the rest sampled (acceldist.py)
            # the points drawn so far (their tables are cached), kept in the checkpoint: what enters
            # exactly depends on the search's own history only, so a resumed search continues it
            if self.hw.surrogate is not None:  # MLP passes, not mapper tables: enumerated much further
                known = self.hw.surrogate.known(len(dist), self.known_points)
            else:
                known = list(range(len(dist))) if len(dist) <= int(s.accel_exact) else self.known_points
            seen: dict = {}

            def cost(ix: list[int]) -> torch.Tensor:
                seen["est"] = self.hw(op_w, bw, ba, a.map_probs(), [(dist.point(i),) for i in ix])
                return self.hw_value(seen["est"]) + seen["est"].penalty

            term, drawn = expected_term(dist, logits[0], known, n, self.sampler.gen, cost)
            self.known_points = sorted(set(known) | set(drawn))
            est = seen["est"]
            return term, (est.take(list(range(len(known), len(known) + len(drawn)))) if drawn else est)
        idx = [dist.sample(lg, n, self.sampler.gen) for lg in logits]  # the same draws on every rank
        points = [tuple(dist.point(int(i[k])) for i in idx) for k in range(n)]
        est = self.hw(op_w, bw, ba, a.map_probs(), points)
        v = self.hw_value(est) + est.penalty
        log_p = sum(dist.log_probs(lg)[i.to(lg[0].device)] for lg, i in zip(logits, idx))
        return v.mean() + score_loss(v, log_p), est

    def hw_value(self, est: HwEstimate) -> torch.Tensor:
        if self.objective == "edp":
            return est.energy_pj * est.cycles / (self.ref["energy_pj"] * self.ref["cycles"])
        key = {"latency": "period_cycles", "energy": "energy_pj", "flops": "macs"}[self.objective]
        return est.value(self.objective) / self.ref[key]

    def relaxed_cycles(self, d: Design) -> float:
        """Cycles of the slowest engine of design `d` under the relaxed cost (a contraction of the
        cached tables; see hwcost.py)."""
        with torch.no_grad():
            return float(self.estimate(onehot_design=d).period_cycles)

    def feasible_points(self) -> list[tuple]:
        """Every accelerator point of the space that fits the budget (per engine when chunked)."""
        return [tuple(int(i) for i in c) for c in self.hw.feasible_points()]

    def design_accel(self) -> list[tuple]:
        """Per engine, the most probable accelerator point that fits the budget."""
        return [self.hw.project([p.detach().cpu() for p in e]) for e in self.arch.accel_probs()]

    def design(self) -> Design:
        """The argmax design (accelerator projected onto the budget)."""
        a = self.arch
        return Design(
            a.argmax_ops(), a.argmax_bits(self.bits), self.design_accel(), a.map_logits.argmax(-1).tolist()
        )

    def derive(self) -> tuple[Design, dict | None]:
        """The searched design. Without a target FPS: the argmax. With one, the argmax can overshoot
        the target (unspent slack) or miss it, and late in the search it flips between near-tied
        designs; so the argmax designs of the last `search.derive_candidates` epochs are each fitted
        to the target (refine.py) and the best of those that meet it exactly wins (when none meets
        it: the fastest). Best (`search.derive_rank`): `trained` ranks by validation accuracy after
        training -- each candidate trained from scratch on `train` with the retrain recipe for
        `derive_train_epochs` (default: `retrain.epochs`, what the result will get), accuracy on
        `val`, over `derive_train_seeds` seeds (DERIVE_SEED, DERIVE_SEED + 1, ..., the same for every
        candidate), only when more than one candidate meets the target -- and picks by the
        one-standard-error rule (one_se_pick): among the candidates whose accuracy is not
        significantly below the best one (paired by seed), the fastest. `supernet`: the highest
        supernet `val` accuracy, ties: the faster."""
        d = self.design()
        s = self.cfg.search
        if not s.target_fps or not s.fit_target:
            return d, None
        from codax.search.refine import fit_to_target

        tried, fitted_keys = [], set()
        for epoch, c in self.argmax_candidates():
            fitted, log = fit_to_target(self, c, float(s.target_fps))
            key = self._network_key(fitted)
            if key in fitted_keys:
                continue  # two starts fitted to the same design: rank it once
            fitted_keys.add(key)
            tried.append({"design": fitted, "log": log, "sn": self.supernet_accuracy(fitted), "epoch": epoch})
        ok = [t for t in tried if t["log"]["meets_target"]]
        t0, ranked = time.perf_counter(), len(ok) > 1
        if s.derive_rank == "trained" and ranked:
            for t in ok:
                t["accs"] = self.trained_val_accs(t["design"])
                t["trained"] = sum(t["accs"]) / len(t["accs"])
            best = one_se_pick(ok, lambda t: t["accs"], lambda t: t["log"]["exact_fps"])
        elif ok:
            best = max(ok, key=lambda t: (t["sn"], t["log"]["exact_fps"]))
        else:
            best = max(tried, key=lambda t: t["log"]["exact_fps"])
        log = dict(best["log"])
        log["from_epoch"] = best["epoch"]
        log["rank"] = s.derive_rank if ranked else "single candidate"
        log["rank_seconds"] = time.perf_counter() - t0
        log["candidates"] = [
            {
                "from_epoch": t["epoch"],
                "exact_fps": t["log"]["exact_fps"],
                "macs": self.exact(t["design"])["macs"],
                "meets_target": t["log"]["meets_target"],
                "supernet_val_acc": t["sn"],
                "trained_val_acc": t.get("trained"),
                "trained_val_se": standard_error(t["accs"]) if "accs" in t else None,
                "trained_val_accs": t.get("accs"),
                "design": t["log"]["design"],
            }
            for t in tried
        ]
        return best["design"], log

    def argmax_candidates(self) -> list[tuple]:
        """(epoch, design) for the final argmax design and the distinct argmax designs of the last
        `search.derive_candidates` epochs with architecture steps (the epoch is "final" for the
        first)."""
        d = self.design()
        cands = {_design_key(d): ("final", d)}
        for h in self.history[-int(self.cfg.search.derive_candidates) :]:
            if h["arch_steps"]:
                c = _design_of(h["design_index"], d.maps)
                cands.setdefault(_design_key(c), (h["epoch"], c))
        return list(cands.values())

    def trained_val_accs(self, d: Design) -> list[float]:
        """`val` accuracies of the design's network trained from scratch on `train` with the retrain
        recipe for `search.derive_train_epochs` epochs, one per seed DERIVE_SEED, DERIVE_SEED + 1, ...
        (`search.derive_train_seeds` of them, the same for every design: paired evidence)."""
        s = self.cfg.search
        ep = int(s.derive_train_epochs or self.cfg.retrain.epochs)
        seeds = range(DERIVE_SEED, DERIVE_SEED + int(s.derive_train_seeds))
        return [brief_accuracy(self.net, self.data, d, ep, i) for i in seeds]

    def _network_key(self, d: Design) -> tuple:
        """What the design runs: ops, the widths of units with layers (a skip unit's are moot), accel."""
        bits = tuple(
            None if u.ops[o].kind == "skip" else tuple(b) for u, o, b in zip(self.net.units, d.ops, d.bits)
        )
        return (tuple(d.ops), bits, tuple(d.accel))

    def _calibrate(self, ex: dict) -> None:
        self.cycle_calib = 1.0 / (1.0 + ex["relaxed_vs_exact_cycles"])  # exact / relaxed cycles

    def exact_artifacts(self, d: Design) -> tuple:
        """(graph, accelerator, mappings, network cost) of design `d`'s exact evaluation."""
        return self.exact(d)["_artifacts"]

    def exact(self, d: Design) -> dict:
        """The derived design mapped by the exact mapper and evaluated exactly (cached per design)."""
        key = _design_key(d)
        if key not in self._exact_cache:
            t0 = time.perf_counter()
            graph, engines = build_graph(self.net, d, self.hw.engine_of)
            accel = build_accelerator(self.space, d.accel)
            mappings, cost, used = exact_cost(
                graph, accel, engines, self.objective, self.lt, self.space, d.accel
            )
            rel = self.estimate(None, onehot_design=d)
            r = cost.resources
            self._exact_cache[key] = {
                "exact_fps": cost.fps,
                "exact_cycles": cost.period_cycles,
                "exact_energy_uj": cost.energy_pj / 1e6,
                "exact_dsp": r.dsp,
                "exact_bram18": r.bram18,
                "exact_area_mm2": r.area_mm2,
                "relaxed_fps": rel.fps,
                "relaxed_energy_uj": float(rel.energy_pj) / 1e6,
                "relaxed_vs_exact_cycles": float(rel.period_cycles) / cost.period_cycles - 1.0,
                "relaxed_vs_exact_energy": float(rel.energy_pj) / cost.energy_pj - 1.0,
                "design_dsp": float(rel.resources.get("dsp", 0.0)),
                "design_bram18": float(rel.resources.get("bram18", 0.0)),
                "design_area_mm2": float(rel.resources.get("area_mm2", 0.0)),
                "macs": cost.macs,
                "mapper": used,
                "exact_seconds": time.perf_counter() - t0,
                "_artifacts": (graph, accel, mappings, cost),
            }
        return self._exact_cache[key]

    # --- steps -------------------------------------------------------------------------------------
    def tau(self, epoch: int) -> float:
        s = self.cfg.search
        return float(s.tau0) * float(s.tau_decay) ** epoch

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, tau: float) -> tuple[float, float]:
        """Weights of one sampled op per block (all ops mixed with `op_sampling: soft`), widths mixed
        by soft Gumbel weights (Auto-NBA)."""
        a, smp = self.arch, self.sampler
        with torch.no_grad():
            logits = a.alpha + a.op_mask
            if self.pair_ops:
                op_w = onehot(smp.one(logits), logits.shape[1], logits)
            else:
                op_w = smp.gumbel_soft(logits, tau)
            bw = smp.gumbel_soft(a.beta_w + a.bit_mask, tau)
            ba = smp.gumbel_soft(a.beta_a + a.bit_mask, tau)
        out = self.supernet(x, op_w, bw, ba)
        loss = F.cross_entropy(out, y)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        ddp.average_grads(self.supernet.parameters())
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), 5.0)
        self.w_opt.step()
        return float(loss.detach()), float((out.argmax(1) == y).float().mean())

    def arch_step(self, x: torch.Tensor, y: torch.Tensor, tau: float) -> dict:
        """One step of the logits on loss = CE + lambda * hw + penalty, both terms through the same
        gates (sampling.py): a sampled pair of ops and of widths per block."""
        op_w, bw, ba, run = self.arch_gates(tau)
        with frozen(self.supernet):  # the logits' gradient needs no weight gradients
            out = self.supernet(x, op_w, bw, ba, run=run)
        ce = F.cross_entropy(out, y)
        t0 = time.perf_counter()
        hw, est = self.hw_term(op_w, bw, ba)
        loss = ce + self.lam * hw
        self.hw_seconds = time.perf_counter() - t0
        self.a_opt.zero_grad(set_to_none=True)
        loss.backward()
        ddp.average_grads(self.arch.parameters())
        self.a_opt.step()
        target = self.cfg.search.target_fps
        derived_fps = None
        if target:
            # steer by the design the search would derive now (argmax), not by the mixture's expected
            # cost: E[cycles] under soft op probabilities is dominated by the large ops and stays far
            # below the argmax design's FPS
            with torch.no_grad():
                derived_fps = self.estimate(None, onehot_design=self.design()).fps / self.cycle_calib
            self.lam = lambda_update(
                self.lam,
                derived_fps,
                float(target),
                float(self.cfg.search.lambda_step),
                float(self.cfg.search.target_band),
            )
        return {
            "val_ce": float(ce.detach()),
            "hw": float(hw.detach()),
            "penalty": float(est.penalty.detach().mean()),
            "fps": est.fps,
            "energy_uj": float(est.energy_pj.detach().mean()) / 1e6,
            **{f"exp_{k}": float(v.detach().mean()) for k, v in est.resources.items()},
        }

    def arch_gates(self, tau: float) -> tuple:
        """(op gates, weight-bit gates, activation-bit gates, ops to run) of one architecture step."""
        a, smp = self.arch, self.sampler
        bits = []
        for lg in (a.beta_w + a.bit_mask, a.beta_a + a.bit_mask):
            bits.append(pair_gates(lg, smp.pairs(lg)))
        logits = a.alpha + a.op_mask
        if not self.pair_ops:  # FBNet: every op mixed by soft Gumbel weights
            return smp.gumbel_soft(logits, tau), *bits, None
        pairs = smp.pairs(logits)
        return pair_gates(logits, pairs), *bits, run_mask(pairs, logits.shape[1]).to(logits.device)

    def evaluate_supernet(self, split: str = "val") -> float:
        """Accuracy of the argmax network inside the supernet (argmax bits), batch statistics: of the
        whole split in memory, per batch of EVAL_BATCH images for a lazily read one."""
        a = self.arch
        ops, bw, ba = (t.to(self.device) for t in (a.onehot("op"), a.onehot("w"), a.onehot("a")))
        if self.data.lazy:
            batches = self.data.loader(split, EVAL_BATCH)
        else:
            batches = [getattr(self.data, split)]
        correct = total = 0
        with batch_stats(self.supernet):
            for x, y in batches:
                out = self.supernet(x.to(self.device), ops, bw, ba)
                correct += int((out.argmax(1).cpu() == y).sum())
                total += len(y)
        return correct / total

    def supernet_accuracy(self, d: Design, split: str = "val") -> float:
        """Accuracy of design `d`'s network inside the supernet, at its widths (batch statistics)."""
        return float(self.supernet_correct(d, split).float().mean())

    def supernet_correct(self, d: Design, split: str = "val") -> torch.Tensor:
        """Per image of `split`: whether design `d`'s network inside the supernet classifies it
        correctly (bool [N]; paired comparisons of two designs on the same images)."""
        return self.supernet_logits(d, split).argmax(1) == getattr(self.data, split)[1]

    def supernet_logits(
        self, d: Design, split: str = "val", prefix_cache: dict | None = None
    ) -> torch.Tensor:
        """Design `d`'s network inside the supernet, at its widths (batch statistics): logits on
        `split` (CPU).

        `prefix_cache` (a dict the caller owns, valid while the supernet's weights do not change):
        each unit's output on `split` is kept under the ops and widths of the units up to it, so a
        design that differs from an earlier one from unit u on (a refine move) runs units u.. only.
        With batch statistics a unit's output depends on the whole batch but on nothing after it,
        so the logits are the same as a full forward's."""
        x = getattr(self.data, split)[0]
        U, O = self.arch.alpha.shape
        bi = {b: i for i, b in enumerate(self.bits)}
        nb = len(self.bits)
        dev = self.device
        op = F.one_hot(torch.tensor(d.ops), O).float().to(dev)
        bw = F.one_hot(torch.tensor([bi[b[0]] for b in d.bits]), nb).float().to(dev)
        ba = F.one_hot(torch.tensor([bi[b[1]] for b in d.bits]), nb).float().to(dev)
        if prefix_cache is None:
            prefix_cache = {}  # one design: every unit runs, nothing is kept
        keys = [(split, tuple(zip(d.ops[: u + 1], map(tuple, d.bits[: u + 1])))) for u in range(U)]
        start = next((u + 1 for u in reversed(range(U)) if keys[u] in prefix_cache), 0)
        h = prefix_cache[keys[start - 1]] if start else x.to(dev)
        if len(prefix_cache) + U - start > PREFIX_CACHE_ENTRIES:
            prefix_cache.clear()  # bounded memory: a few hundred activations of `split`
        with batch_stats(self.supernet):
            for u in range(start, U):
                h = prefix_cache[keys[u]] = self.supernet(h, op, bw, ba, units=range(u, u + 1))
        return h.cpu()

    def run_epoch(self, progress: bool = True) -> dict:
        from tqdm import tqdm

        s, e = self.cfg.search, self.epoch
        tau = self.tau(e)
        gen = torch.Generator().manual_seed(self.seed * 1000 + e)
        tb = self.data.loader("train", s.batch_size, gen, self.rank, self.world)
        vb = self.data.loader("val", s.batch_size, gen, self.rank, self.world)
        n = min(len(tb), len(vb))
        if s.max_steps_per_epoch:
            n = min(n, int(s.max_steps_per_epoch))
        search_arch = e >= s.warmup_epochs
        t0 = time.perf_counter()
        self.supernet.train()
        agg: dict[str, list[float]] = {}
        bar = tqdm(
            range(n),
            desc=f"epoch {e + 1}/{s.epochs}",
            leave=False,
            disable=None if progress and not self.rank else True,  # bars only on a terminal
        )
        train_it, val_it = iter(tb), iter(vb)
        for _ in bar:
            x, y = (t.to(self.device, non_blocking=True) for t in next(train_it))
            tl, ta = self.weight_step(x, y, tau)
            agg.setdefault("train_loss", []).append(tl)
            agg.setdefault("train_acc", []).append(ta)
            if search_arch:
                xv, yv = (t.to(self.device, non_blocking=True) for t in next(val_it))
                for k, v in self.arch_step(xv, yv, tau).items():
                    agg.setdefault(k, []).append(v)
                self.step += 1
                every = int(s.exact_every or 0)
                if every and self.step % every == 0:
                    ex = self.exact(self.design())
                    self._calibrate(ex)
                    if self.rank == 0:
                        self.exact_log.append({"step": self.step, **_public(ex)})
            bar.set_postfix(loss=f"{tl:.3f}", lam=f"{self.lam:.3g}")
        self.sched.step()
        self.epoch += 1
        row = {
            "epoch": self.epoch,
            "temperature": tau,
            "lambda": self.lam,
            "arch_steps": search_arch,
            **{k: float(np.mean(v)) for k, v in agg.items()},
        }
        row["val_acc"] = self.evaluate_supernet("val")
        with torch.no_grad():
            est = self.estimate(None)
        row.update(
            expected_fps=est.fps,
            expected_energy_uj=float(est.energy_pj) / 1e6,
            expected_cycles=float(est.period_cycles),
            **{f"expected_{k}": float(v) for k, v in est.resources.items()},
        )
        d = self.design()
        ex = self.exact(d)
        self._calibrate(ex)
        row.update(_public(ex), cycle_calib=self.cycle_calib)
        row["design"] = d.to_dict(self.net, self.space)
        row["design_index"] = {
            "ops": list(d.ops),
            "bits": [list(b) for b in d.bits],
            "accel": [list(c) for c in d.accel],
        }
        row["epoch_seconds"] = time.perf_counter() - t0
        self.history.append(row)
        return row

    # --- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "lam": self.lam,
            "cycle_calib": self.cycle_calib,
            "ref": self.ref,
            "supernet": self.supernet.state_dict(),
            "arch": self.arch.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            "sampler": self.sampler.state(),
            "known_points": self.known_points,
            "sched": self.sched.state_dict(),
            "history": self.history,
            "exact_log": self.exact_log,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def load_state(self, st: dict) -> None:
        for part in ("supernet", "arch"):  # strict: names and shapes must be this search's
            try:
                getattr(self, part).load_state_dict(st[part])
            except RuntimeError as e:
                raise ConfigError(
                    f"checkpoint.pt: its {part} does not match this search's: it was written by a search "
                    "with another network, bitwidth or accelerator space, or by another version of codax's "
                    "supernet; resume with the config it was written with, or start afresh (no --resume, or "
                    f"a new output directory). {e}"
                ) from None
        self.epoch, self.step, self.lam, self.ref = st["epoch"], st["step"], st["lam"], st["ref"]
        self.cycle_calib = st["cycle_calib"]
        self.w_opt.load_state_dict(st["w_opt"])
        self.a_opt.load_state_dict(st["a_opt"])
        self.sched.load_state_dict(st["sched"])
        self.sampler.load_state(st["sampler"])
        self.known_points = list(st["known_points"])
        self.history, self.exact_log = st["history"], st["exact_log"]
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(st["rng"]["numpy"])
        random.setstate(st["rng"]["python"])
        if st["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])


def lambda_update(lam: float, fps: float, target: float, step: float, band: float) -> float:
    """One dual-ascent step on lambda, the multiplier of the constraint FPS >= target, in log space:
    log lambda moves by log(step) * (target - fps) / (band * target), clipped to +-log(step). Too
    slow raises the hardware pressure, faster than the target lowers it, in proportion to the
    relative miss (full step at `band` or more), so lambda settles where the derived design meets
    the target exactly (complementary slackness: slack a constraint does not need is accuracy
    given away). A dead band (hold anywhere in [target, target * (1 + band)]) left the search up to
    `band` faster than asked, and the derivation could not buy the accuracy back."""
    err = max(-1.0, min(1.0, (target - fps) / (band * target)))
    return min(100.0, max(1e-4, lam * step**err))


def _design_key(d: Design) -> tuple:
    return (tuple(d.ops), tuple(d.bits), tuple(d.accel))


def _design_of(index: dict, maps: list) -> Design:
    """A history row's design_index back as a Design."""
    return Design(
        list(index["ops"]), [tuple(b) for b in index["bits"]], [tuple(c) for c in index["accel"]], maps
    )


def _public(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl (everything) and metrics.csv (the scalar columns)."""
    _atomic_write(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    cols: list[str] = []
    for r in history:
        cols += [k for k, v in r.items() if k not in cols and isinstance(v, (int, float, bool))]
    lines = [",".join(cols)] + [",".join(str(r.get(c, "")) for c in cols) for r in history]
    _atomic_write(out / "metrics.csv", "\n".join(lines) + "\n")


def run_search(
    config: SearchConfig | dict | str | Path | None = None,
    out_dir: str | Path = "out/search",
    resume: bool = False,
    progress: bool = True,
    *,
    stop_after: int | None = None,
    finalize: bool = True,
) -> SearchResult:
    """Co-search a network, its bitwidths and its accelerator; write the hand-off to `out_dir`.

    `config`: a dict or YAML path overlaid on the bundled default (digits, small supernet, ZC706).
    `resume`: continue from out_dir/checkpoint.pt, bit-exactly. `stop_after`: stop after this many
    epochs in total (a budgeted or interrupted run; resume later). `finalize`: derive, retrain and
    export at the end (see derive.py / finalize.py)."""
    cfg = load_config(config)
    threads = torch.get_num_threads()
    if cfg.search.threads:
        torch.set_num_threads(int(cfg.search.threads))
    try:
        return _run(cfg, Path(out_dir), resume, progress, stop_after, finalize)
    finally:
        torch.set_num_threads(threads)


def _run(
    cfg: SearchConfig, out: Path, resume: bool, progress: bool, stop_after: int | None, finalize: bool
) -> SearchResult:
    ddp.init_if_launched()
    cs = CoSearch(cfg)
    main = cs.rank == 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():  # before anything is written: a checkpoint that does not fit changes nothing
        cs.load_state(torch.load(ckpt, weights_only=False))
    if main:
        out.mkdir(parents=True, exist_ok=True)
        from codax.ir import dump_yaml

        _atomic_write(out / "config.yaml", dump_yaml(cfg.to_dict()))
    t_start = time.perf_counter()
    total = cfg.search.epochs if stop_after is None else min(stop_after, cfg.search.epochs)
    while cs.epoch < total:
        row = cs.run_epoch(progress)
        if main:
            write_metrics(out, cs.history)
            torch.save(cs.state(), ckpt.with_suffix(".tmp"))
            os.replace(ckpt.with_suffix(".tmp"), ckpt)
            if progress:
                print(
                    f"epoch {row['epoch']:3d}  val acc {row['val_acc']:.3f}  "
                    f"exp FPS {row['expected_fps']:,.0f}  "
                    f"exact FPS {row['exact_fps']:,.0f}  gap {row['relaxed_vs_exact_cycles']:+.1%}  "
                    f"lambda {row['lambda']:.3g}  tau {row['temperature']:.2f}"
                )
    d, fit = cs.derive() if cs.epoch >= cfg.search.epochs else (cs.design(), None)
    search_seconds = time.perf_counter() - t_start
    summary: dict = {
        "epochs": cs.epoch,
        "search_seconds": search_seconds,
        "design": d.to_dict(cs.net, cs.space),
        "target_fit": fit,
        "surrogate": cs.surrogate_report,
        "cost_table_seconds": cs.hw.table_seconds,
        **_public(cs.exact(d)),
    }
    if cs.epoch >= cfg.search.epochs:  # which accelerator picks the cost decided, and which are ties
        from codax.search.visibility import choice_visibility

        choices = choice_visibility(cs, d)
        summary["accelerator_choices"] = choices
        summary["choices_the_cost_cannot_see"] = [
            c["choice"] if cs.chunks == 1 else f"e{c['engine']}.{c['choice']}"
            for c in choices
            if not c["sees"]
        ]
    if finalize and cs.epoch >= cfg.search.epochs and main:
        from codax.search.finalize import finalize_design

        summary.update(finalize_design(cs, d, out, progress))
    if main:
        _atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return SearchResult(out, summary, d, cs.history)
