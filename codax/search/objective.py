"""The hardware term of the co-search loss: cost and resources of the supernet, mixed by its op, bit
and mapping weights (differentiable in them), on given accelerator points (the accelerator
distribution's samples or all its points, acceldist.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from codax.errors import InfeasibleError
from codax.hw.cost import chained_cycles, descriptor_beats, descriptor_fetch_cycles
from codax.hw.library import load_device
from codax.search.config import SearchConfig
from codax.search.hwcost import LayerTable, configs_costs, expected_resources, onehot_probs
from codax.search.mappertable import MapperTables, table_key
from codax.search.space import AccelSpace, NetworkSpace


@dataclass
class HwEstimate:
    """Per accelerator point of the estimate ([points] tensors)."""

    period_cycles: torch.Tensor  # slowest engine (throughput)
    cycles: torch.Tensor  # end-to-end latency
    energy_pj: torch.Tensor
    macs: torch.Tensor
    resources: dict[str, torch.Tensor]
    penalty: torch.Tensor
    clock_mhz: float

    @property
    def fps(self) -> float:
        """At the mean period over the estimate's accelerator points."""
        return self.clock_mhz * 1e6 / float(self.period_cycles.detach().mean())

    def take(self, pos: list[int]) -> HwEstimate:
        """The estimate at some of its points."""
        i = torch.tensor(pos, dtype=torch.long, device=self.period_cycles.device)
        return HwEstimate(
            self.period_cycles[i],
            self.cycles[i],
            self.energy_pj[i],
            self.macs[i],
            {k: v[i] for k, v in self.resources.items()},
            self.penalty[i],
            self.clock_mhz,
        )

    def value(self, objective: str) -> torch.Tensor:
        return {
            "latency": self.period_cycles,
            "energy": self.energy_pj,
            "edp": self.energy_pj * self.cycles,
            "flops": self.macs,
        }[objective]


def budget_of(cfg: SearchConfig, space: AccelSpace) -> dict[str, float]:
    """The resource budget: the config's values, else the FPGA device's DSP and BRAM18."""
    b = {k: v for k, v in cfg.budget.__dict__.items() if v is not None}
    if space.base.target == "fpga":
        dev = load_device(space.base.device)
        b.setdefault("dsp", float(dev.dsp))
        b.setdefault("bram18", float(dev.bram18))
        b.pop("area_mm2", None)
    else:
        b.pop("dsp", None)
        b.pop("bram18", None)
    return {k: float(v) for k, v in b.items()}


class HardwareObjective:
    """Hardware cost of the supernet on accelerator points, from cached per-point cost tables."""

    def __init__(
        self,
        net: NetworkSpace,
        space: AccelSpace,
        lt: LayerTable,
        chunks: int,
        budget: dict,
        m_count: int,
        relaxed: bool = True,
        penalty: float = 10.0,
        mapper_objective: str | None = None,
    ):
        """`mapper_objective`: the cost tables hold the exact mapper's mapping of every layer on each
        accelerator point, searched for this objective (mappertable.py); None: the mapping
        templates (hwcost.py)."""
        self.net, self.space, self.lt = net, space, lt
        self.mapper_objective = mapper_objective
        self.chunks, self.budget, self.m_count, self.relaxed, self.penalty_w = (
            chunks,
            budget,
            m_count,
            relaxed,
            penalty,
        )
        n_stages = max(u.stage for u in net.units) + 1
        self.engine_of = [min(chunks - 1, u.stage * chunks // n_stages) for u in net.units]
        self.cache: dict[tuple, torch.Tensor] = {}
        # the mapper's searches shared across points that pose them alike, and whole tables across
        # points that build the same accelerator (mappertable.py)
        self.mapper_tables = (
            MapperTables(lt, space, m_count, mapper_objective) if mapper_objective is not None else None
        )
        self._by_key: dict[str, torch.Tensor] = {}
        # the descriptor fetch across the network's calls (codax.hw.cost.chained_cycles): F once per
        # engine, each call's prefetch beats, the exposed part of each prefetch
        dram = space.base.dram
        self.fetch = descriptor_fetch_cycles(dram.latency, dram.bandwidth)
        self.prefetch_beats = descriptor_beats(dram.bandwidth)
        self._last_call = self._last_calls()
        self._stacked: tuple = (None, None)  # the latest stacked tables, on the device asked for
        self.table_seconds = 0.0
        self._res_cache: dict[tuple, dict[str, float]] = {}
        self.surrogate = (
            None  # set by the surrogate mode: callable(units, p_w, p_a, points) -> [V, u, O, S, 2]
        )

    # --- analytic tables ---------------------------------------------------------------------------
    def tables(self, cfgs: list[tuple], device: torch.device | None = None) -> torch.Tensor:
        """[V, n, B, M, 2] cost tables of the points (built and cached on the host, where the mapper
        runs); on `device` (kept there while the same points are asked for)."""
        import time

        missing = [c for c in dict.fromkeys(cfgs) if c not in self.cache]
        if missing:
            t0 = time.perf_counter()
            if self.mapper_tables is not None:
                # points that build the same accelerator (they differ in choices only the templates
                # see, such as double buffering) share one table
                keys = {c: table_key(self.space, c) for c in missing}
                build: dict[str, tuple] = {}  # one point per accelerator not tabulated yet
                for c in missing:
                    if keys[c] not in self._by_key:
                        build.setdefault(keys[c], c)
                for c, v in zip(build.values(), self.mapper_tables.costs(list(build.values()))):
                    self._by_key[keys[c]] = v
                for c in missing:
                    self.cache[c] = self._by_key[keys[c]]
            else:
                new = configs_costs(self.lt, self.space, missing, self.m_count, self.relaxed)
                for c, v in zip(missing, new):
                    self.cache[c] = v
            self.table_seconds += time.perf_counter() - t0
        key = (tuple(cfgs), device)
        if self._stacked[0] != key:
            t = torch.stack([self.cache[c] for c in cfgs])
            self._stacked = (key, t if device is None else t.to(device))
        return self._stacked[1]

    def point_costs(self, cfg: tuple, rows: list[int]) -> torch.Tensor:
        """[len(rows), n_bit_combos, 2] (cycles, energy pJ) of some layers of the table on one
        accelerator point, under the mapping the tables use (the mapper's, or the fastest template);
        the oracle of the DANCE surrogate. Computed afresh (not cached: a sample of rows)."""
        if self.mapper_tables is not None:
            return self.mapper_tables.costs([cfg], rows=rows)[0][rows, :, 0]
        t = configs_costs(self.lt, self.space, [cfg], self.m_count, self.relaxed)[0][rows]  # [r, B, M, 2]
        best = t[..., 0].argmin(-1)  # the fastest template
        return torch.gather(t, 2, best[..., None, None].expand(*best.shape, 1, 2)).squeeze(2)

    def layer_costs(self, units: list[int], p_w, p_a, p_map, cfgs: list[tuple]) -> torch.Tensor:
        """[len(cfgs), len(units), O, S, 2] (cycles, energy) of each op's sub-layers on each
        accelerator point, mixed over the bit and mapping weights."""
        dev = p_w.device
        if self.surrogate is not None:  # the MLP at the points themselves, where it was trained
            return self.surrogate(units, p_w, p_a, cfgs)
        T = self.tables(cfgs, dev)  # [V, n, B, M, 2]
        idx = self.lt.index[units]  # [u, O, S], on the host: the slots are found without a device sync
        pb = (p_w[units].unsqueeze(2) * p_a[units].unsqueeze(1)).flatten(1)  # [u, B]
        # only the (unit, op, sub-layer) slots that hold a layer are gathered and contracted (most are
        # empty: skip ops, ops without an expand layer); the empty ones cost 0
        uu, oo, ss = (idx >= 0).nonzero(as_tuple=True)
        U, O, S = idx.shape
        rows, flat = idx[uu, oo, ss].to(dev), ((uu * O + oo) * S + ss).to(dev)
        uu, ss = uu.to(dev), ss.to(dev)
        w = pb[uu].unsqueeze(-1) * p_map[units].to(dev)[uu, ss].unsqueeze(1)  # [P, B, M]
        vals = torch.einsum("vpbmk,pbm->vpk", T[:, rows], w)  # [V, P, 2]
        out = vals.new_zeros(T.shape[0], U * O * S, 2).index_copy(1, flat, vals)
        return out.view(T.shape[0], U, O, S, 2)

    def _last_calls(self) -> list[torch.Tensor]:
        """Per engine, [u, O, S] (its units): 1 at each op's last sub-layer in the engine's last unit,
        the engine's last call when that op is chosen."""
        out = []
        for e in range(self.chunks):
            units = [u for u in range(len(self.net.units)) if self.engine_of[u] == e]
            valid = self.lt.index[units] >= 0  # [u, O, S]
            last = torch.zeros(valid.shape, dtype=torch.bool)
            if units:
                s_idx = torch.arange(valid.shape[-1]).expand_as(valid[-1])
                final = torch.where(valid[-1], s_idx, -1).amax(-1)  # [O]
                last[-1] = (s_idx == final.unsqueeze(-1)) & valid[-1]
            out.append(last)
        return out

    def _chained(self, C: torch.Tensor, units: list[int], e: int) -> torch.Tensor:
        """Each call's cycles in the engine's run (C [V, u, O, S, 2], own cycles): every call but the
        engine's last costs max(own + prefetch beats, F); the last prefetches the next engine's first
        call (its beats) unless it ends the network."""
        dev = C.device
        valid = (self.lt.index[units] >= 0).to(dev)
        last = self._last_call[e].to(dev)
        cyc = chained_cycles(C[..., 0], self.fetch, self.prefetch_beats, last)
        if e + 1 < self.chunks:
            cyc = cyc + last * self.prefetch_beats
        return torch.stack([torch.where(valid, cyc, torch.zeros_like(cyc)), C[..., 1]], dim=-1)

    # --- the estimate ------------------------------------------------------------------------------
    def __call__(self, p_op, p_w, p_a, p_map, points: list[tuple]) -> HwEstimate:
        """The cost of the network mixed by the op / bit / mapping weights on each of `points`
        (one accelerator point per engine each): [len(points)] tensors. The accelerator's
        distribution enters through which points are given (acceldist.py)."""
        dev = p_op.device  # the step's device: the hardware term runs beside the supernet
        n = len(points)
        cyc, energy = [], torch.zeros(n, device=dev)
        for e in range(self.chunks):
            units = [u for u in range(len(self.net.units)) if self.engine_of[u] == e]
            cfgs = [tuple(pt[e]) for pt in points]
            uniq = list(dict.fromkeys(cfgs))
            C = self._chained(self.layer_costs(units, p_w, p_a, p_map, uniq), units, e).sum(3)  # [V, u, O, 2]
            per = (p_op[units].unsqueeze(-1) * C).sum((1, 2))  # [V, 2]
            at = {c: k for k, c in enumerate(uniq)}
            pos = torch.tensor([at[c] for c in cfgs], device=dev)
            # the engine's first call fetches its own descriptor
            cyc.append(per[pos, 0] + (self.fetch if units else 0.0))
            energy = energy + per[pos, 1]
        totals: dict[str, list[float]] = {}
        for pt in points:
            r: dict[str, float] = {}
            for e in range(self.chunks):
                for k, v in self.config_resources(tuple(pt[e])).items():
                    r[k] = r.get(k, 0.0) + v
            for k, v in r.items():
                totals.setdefault(k, []).append(v)
        res = {k: torch.tensor(v, dtype=torch.float32, device=dev) for k, v in totals.items()}
        pen = torch.zeros(n, device=dev)
        for k, limit in self.budget.items():
            if k in res:
                pen = pen + torch.relu(res[k] / limit - 1.0)
        c = torch.stack(cyc)  # [E, n]
        macs = (p_op * self.lt.macs.float().to(dev)).sum().expand(n)
        return HwEstimate(
            c.amax(0), c.sum(0), energy, macs, res, pen * self.penalty_w, self.space.base.clock_mhz
        )

    # --- budget ------------------------------------------------------------------------------------
    def config_resources(self, cfg: tuple) -> dict[str, float]:
        if cfg not in self._res_cache:
            r = expected_resources(self.space, onehot_probs(self.space, cfg))
            self._res_cache[cfg] = {k: float(v) for k, v in r.items()}
        return self._res_cache[cfg]

    def fits(self, cfg: tuple) -> bool:
        share = 1.0 / self.chunks
        r = self.config_resources(cfg)
        return all(r[k] <= v * share + 1e-6 for k, v in self.budget.items() if k in r)

    def check_feasible(self) -> None:
        """Raise InfeasibleError naming the smallest design when no accelerator point fits."""
        cfgs = self.space.all_configs()
        if any(self.fits(c) for c in cfgs):
            return
        keys = [k for k in self.budget if k in self.config_resources(cfgs[0])]
        smallest = min(cfgs, key=lambda c: max(self.config_resources(c)[k] / self.budget[k] for k in keys))
        r = self.config_resources(smallest)
        need = ", ".join(
            f"{k} {r[k]:,.1f} > budget {self.budget[k] * (1 / self.chunks):,.1f}"
            for k in keys
            if r[k] > self.budget[k] / self.chunks + 1e-6
        )
        raise InfeasibleError(
            f"no accelerator in the search space fits the budget: the smallest design "
            f"({self.space.describe(smallest)}{', per chunk' if self.chunks > 1 else ''}) needs {need}; "
            "raise budget.* or add smaller accelerator.rows/cols/buffer_kb options"
        )

    def project(self, probs: list[torch.Tensor]) -> tuple:
        """The most probable accelerator point that fits the budget (the argmax when it fits)."""
        if self.space.fixed is not None:
            return self.space.fixed
        mode = tuple(int(p.argmax()) for p in probs)
        if self.fits(mode):
            return mode
        feas = self.feasible_points()
        logp = sum(torch.log(p.detach().clamp(min=1e-12)).double()[feas[:, c]] for c, p in enumerate(probs))
        # first maximum, as the scan over all_configs() order would pick (ties are common: uniform logits)
        return tuple(int(i) for i in feas[int(torch.argmax(logp))])

    def feasible_points(self) -> torch.Tensor:
        """[F, n_choices] option indices of every accelerator point that fits (all_configs order);
        computed once, so projecting onto the budget every step is one gather."""
        if not hasattr(self, "_feasible"):
            self.check_feasible()
            self._feasible = torch.tensor([c for c in self.space.all_configs() if self.fits(c)])
        return self._feasible


def fps_of(period_cycles: float, clock_mhz: float) -> float:
    return clock_mhz * 1e6 / period_cycles if period_cycles > 0 else math.inf
