"""The analytical cost model: a Timeloop-style analysis of a mapping's loop nest, in PyTorch.

One implementation serves two uses:
1. exact evaluation of many integer (layer, engine, mapping) points at once (tensors [B, ...]);
2. gradients w.r.t. relaxed choices: `relaxed=True` replaces ceil() by its argument so costs are
   smooth in fractional factors/sizes, and `expected()` mixes the costs of discrete options by
   their probabilities (exact when the probabilities are one-hot).

The counting rules, which the generated HLS code follows too (see docs/cost_model.md):
- Loops are ordered level by level (DRAM outermost), and within a level by the mapping's order.
  The spatial loops sit inside every temporal loop of the shared levels and outside the per-PE
  levels' loops; for transfer counting the PE array's tiles are taken together (multicast).
- Operand X moves from its parent level (the nearest outer level that holds X) into level h once
  per iteration of the loops outside h, except that the innermost run of loops irrelevant to X
  (after dropping loops of trip count 1) reuses the tile in place.
- Tiles lie on a grid over the padded iteration space: tiles past a bound are skipped, a tile that
  crosses it is clipped, so summed over a relevant dim's tiles the extents add up to its bound.
- An input tile moves the distinct input rows x cols its (P, R) x (Q, S) extents touch, zero
  padding positions included (the loader writes them into the buffer).
- Outputs leave level h once per visit; when reduction loops sit outside h, all but the first visit
  of an output tile also read the partial sums back. Partial sums move at accumulator width; the
  final outputs written to DRAM at output width.
- Each MAC reads W and I and updates O in the innermost level holding each operand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codax.hw.encode import CostInputs
from codax.ir import DIMS, OPERANDS, RELEVANT

_D = {d: i for i, d in enumerate(DIMS)}
_REL = {x: torch.tensor([d in RELEVANT[x] for d in DIMS]) for x in OPERANDS}
N_, G_, K_, C_, P_, Q_, R_, S_ = (_D[d] for d in DIMS)


@dataclass
class CostOutputs:
    macs: torch.Tensor  # [B] valid multiply-accumulates
    cycles: torch.Tensor  # [B] latency
    compute_cycles: torch.Tensor  # [B] PE-array steps
    stall_cycles: torch.Tensor  # [B] transfers that do not overlap compute
    fill_cycles: torch.Tensor  # [B] first input tiles of double-buffered levels, before compute starts
    drain_cycles: torch.Tensor  # [B] last output tiles of double-buffered levels, after compute ends
    energy_pj: torch.Tensor  # [B]
    mac_energy_pj: torch.Tensor  # [B]
    level_energy_pj: torch.Tensor  # [B, L]
    words_in: torch.Tensor  # [B, L, 3] words written into level h from its parent (W, I, psum reloads of O)
    words_out: torch.Tensor  # [B, L, 3] words leaving level h to its parent (O only)
    reads_bits: torch.Tensor  # [B, L] bits read from each level (transfers + MAC operand reads)
    writes_bits: torch.Tensor  # [B, L]
    port_cycles: torch.Tensor  # [B, L] cycles of traffic through each level's port
    tile_bytes: torch.Tensor  # [B, L, 3] bytes of each operand's tile held at each level (one copy)
    overflow_bytes: (
        torch.Tensor
    )  # [B, L] how far the fullest buffer of the level is over capacity (<= 0 fits)
    covered: torch.Tensor  # [B] bool: factors cover every dim
    utilization: torch.Tensor  # [B] MACs / (cycles x PEs)
    spatial_utilization: torch.Tensor  # [B] MACs / (compute cycles x PEs)

    @property
    def legal(self) -> torch.Tensor:
        return self.covered & (self.overflow_bytes <= 0).all(dim=1)

    @property
    def dram_bits(self) -> torch.Tensor:
        return self.reads_bits[:, 0] + self.writes_bits[:, 0]

    @property
    def edp(self) -> torch.Tensor:
        return self.energy_pj * self.cycles


def _distinct(p: torch.Tensor, r: torch.Tensor, s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """|{i*s + j*d : i < p, j < r}| for coprime s, d: each collision chain (i, j) ~ (i-d, j+s) counts once."""
    return p * r - torch.relu(p - d) * torch.relu(r - s)


def _window_sum(bp, tp, np_, br, tr, nr, s, d):
    """Distinct input rows summed over all (P-tile, R-tile) pairs: n-1 full tiles and one last tile
    per dim."""
    fp, fr = torch.minimum(tp, bp), torch.minimum(tr, br)
    lp, lr = bp - (np_ - 1) * tp, br - (nr - 1) * tr
    return (
        (np_ - 1) * (nr - 1) * _distinct(fp, fr, s, d)
        + (np_ - 1) * _distinct(fp, lr, s, d)
        + (nr - 1) * _distinct(lp, fr, s, d)
        + _distinct(lp, lr, s, d)
    )


def _dense_window(p, r, stride, dil):
    return (p - 1) * stride + (r - 1) * dil + 1


def _transfer_words(X: str, x: CostInputs, bound: torch.Tensor, tile: torch.Tensor, ceil) -> torch.Tensor:
    """Words of operand X moved over all visits, given each dim's child tile [B, 8]: tiles lie on a
    grid, so a relevant dim's extents add up to its bound, an irrelevant dim counts its tiles."""
    n = ceil(bound / tile)
    if X == "I":
        hs, ws = (
            _window_sum(
                bound[:, o],
                tile[:, o],
                n[:, o],
                bound[:, k],
                tile[:, k],
                n[:, k],
                x.win_s[:, a],
                x.win_d[:, a],
            )
            for a, o, k in ((0, P_, R_), (1, Q_, S_))  # rows: output rows x kernel rows; cols likewise
        )
        return n[:, K_] * bound[:, N_] * bound[:, G_] * bound[:, C_] * hs * ws
    return torch.where(_REL[X].view(1, 8), bound, n).prod(dim=1)


def cost_core(x: CostInputs, relaxed: bool = False) -> CostOutputs:
    ceil = (lambda t: t) if relaxed else torch.ceil
    B, L, _ = x.factor.shape
    dt = x.factor.dtype
    f, s, bound = x.factor, x.spatial, x.bound
    lvl = torch.arange(L)
    per_pe = lvl.view(1, L) > x.spatial_level.view(B, 1)  # [B, L]
    macs = bound.prod(dim=1)
    ones = torch.ones(B, dtype=dt)

    # --- tiles held at each level (capacity) ------------------------------------------------------
    suffix = torch.flip(torch.cumprod(torch.flip(f, [1]), dim=1), [1])  # prod of factors at levels >= l
    agg = torch.minimum(suffix * s.unsqueeze(1), bound.unsqueeze(1))  # the PE array's tiles taken together
    held = torch.minimum(
        torch.where(per_pe.unsqueeze(2), suffix, suffix * s.unsqueeze(1)), bound.unsqueeze(1)
    )

    def footprints(e: torch.Tensor, moved: bool = False) -> torch.Tensor:  # e [B, L, 8] -> words [B, L, 3]
        """Words of each operand's tile: as held in a buffer (dense input window), or as moved
        (`moved`: the distinct input rows and cols the window touches)."""
        if moved:
            h = _distinct(e[..., P_], e[..., R_], x.win_s[:, :1], x.win_d[:, :1])
            w = _distinct(e[..., Q_], e[..., S_], x.win_s[:, 1:], x.win_d[:, 1:])
        else:
            h = torch.minimum(
                _dense_window(e[..., P_], e[..., R_], x.stride[:, :1], x.dilation[:, :1]), x.in_pad[:, :1]
            )
            w = torch.minimum(
                _dense_window(e[..., Q_], e[..., S_], x.stride[:, 1:], x.dilation[:, 1:]), x.in_pad[:, 1:]
            )
        wt = e[..., G_] * e[..., K_] * e[..., C_] * e[..., R_] * e[..., S_]
        it = e[..., N_] * e[..., G_] * e[..., C_] * h * w
        ot = e[..., N_] * e[..., G_] * e[..., K_] * e[..., P_] * e[..., Q_]
        return torch.stack([wt, it, ot], dim=2)

    tile_bits = torch.stack([x.w_bits, x.a_bits, x.acc_bits], dim=1).unsqueeze(1)  # O held as accumulators
    tile_bytes = ceil(footprints(held) * tile_bits / 8.0)  # whole bytes, as a buffer is allocated
    need = tile_bytes * (1.0 + x.db).unsqueeze(2) * x.holds
    over_op = (need - x.cap_op).amax(dim=2)
    over_shared = need.sum(dim=2) - x.cap_shared
    overflow = torch.maximum(over_op, over_shared)
    overflow[:, 0] = -1.0  # DRAM is unbounded
    covered = (f.prod(dim=1) * s >= bound - 1e-9).all(dim=1)
    agg_words = footprints(agg, moved=True)

    # --- transfers at every boundary (operand X into level h) --------------------------------------
    pos = lvl.view(1, L, 1).to(dt) * 8.0 + x.rank  # nest position of every loop, outermost smallest
    active = f > 1.0 + 1e-9  # trip-count-1 loops are absent
    words_in = torch.zeros(B, L, 3, dtype=dt)
    words_out = torch.zeros(B, L, 3, dtype=dt)
    reads = torch.zeros(B, L, dtype=dt)
    writes = torch.zeros(B, L, dtype=dt)
    port = torch.zeros(B, L, dtype=dt)  # bits through each parent's port
    not_db = torch.zeros(B, L, dtype=dt)  # parents feeding a single-buffered child
    fill = torch.zeros(B, L, dtype=dt)  # bits of the first input tiles, loaded before compute starts
    drain = torch.zeros(B, L, dtype=dt)  # bits of the last output tiles, stored after compute ends
    o_size = bound[:, N_] * bound[:, G_] * bound[:, K_] * bound[:, P_] * bound[:, Q_]
    op_bits = {"W": x.w_bits, "I": x.a_bits, "O": x.acc_bits}
    for xi, X in enumerate(OPERANDS):
        rel = _REL[X].view(1, 1, 8)
        for h in range(1, L):
            outer = (lvl < h).view(1, L, 1)
            # the innermost loop outside h relevant to X; the loops after it reuse X's tile in place
            last = torch.where(active & rel & outer, pos, -1.0).flatten(1).amax(dim=1)
            kept = outer & (pos <= last.view(B, 1, 1))
            inner = torch.where(kept, 1.0, f).prod(dim=1)  # [B, 8] one PE's child tile
            held = x.holds[:, h, xi]
            words = _transfer_words(X, x, bound, inner * s, ceil) * held  # the PE array's tiles together
            # per-PE memories are accessed once per PE copy: every PE writes its own tile (multicast
            # data lands in several PEs, overlapping input windows are loaded by each PE)
            copies = _transfer_words(X, x, bound, inner, ceil) * held
            parent = torch.where((lvl.view(1, L) < h) & (x.holds[:, :, xi] > 0), lvl.view(1, L), -1).amax(
                dim=1
            )
            to_parent = torch.nn.functional.one_hot(parent, L).to(dt)  # [B, L]
            pe_parent = parent > x.spatial_level
            child_words = torch.where(h > x.spatial_level, copies, words)
            parent_words = torch.where(pe_parent, copies, words)
            if X == "O":
                # every visit but the first of an output tile reads the partial sums back
                revisit = torch.where(words > 0, 1.0 - o_size / words.clamp(min=1.0), 0.0)
                reload = words - o_size * held
                to_dram = (parent == 0).to(dt)
                up = to_dram * (o_size * x.o_bits + reload * x.acc_bits) + (1 - to_dram) * words * x.acc_bits
                words_out[:, h, xi] = words
                words_in[:, h, xi] = reload
                reads[:, h] += child_words * x.acc_bits
                reads += to_parent * (parent_words * revisit * x.acc_bits).unsqueeze(1)
                writes += to_parent * torch.where(pe_parent, parent_words * x.acc_bits, up).unsqueeze(1)
                writes[:, h] += child_words * revisit * x.acc_bits
                moved = up + reload * x.acc_bits
                last_bits = agg_words[:, h, xi] * torch.where(parent == 0, x.o_bits, x.acc_bits)
                drain += to_parent * (held * last_bits).unsqueeze(1)
            else:
                words_in[:, h, xi] = words
                reads += to_parent * (parent_words * op_bits[X]).unsqueeze(1)
                writes[:, h] += child_words * op_bits[X]
                moved = words * op_bits[X]
                fill += to_parent * (held * agg_words[:, h, xi] * op_bits[X]).unsqueeze(1)
            port += to_parent * moved.unsqueeze(1)
            not_db += to_parent * (held * (1.0 - x.db[:, h])).unsqueeze(1)

    # MAC operand accesses in the innermost level holding each operand. A shared level feeds the
    # whole array: one access serves the PEs that the array's irrelevant dims multicast it to.
    for xi, X in enumerate(OPERANDS):
        inner = torch.where(x.holds[:, :, xi] > 0, lvl.view(1, L), torch.full((B, L), -1)).amax(dim=1)
        onehot = torch.nn.functional.one_hot(inner, L).to(dt)
        multicast = torch.where(_REL[X].view(1, 8), torch.ones_like(s), s).prod(dim=1)
        accesses = torch.where(inner > x.spatial_level, macs, macs / multicast)
        reads += onehot * (accesses * op_bits[X]).unsqueeze(1)
        if X == "O":
            writes += onehot * (accesses * x.acc_bits).unsqueeze(1)

    # --- cycles -------------------------------------------------------------------------------------
    f_pe = torch.where(per_pe.unsqueeze(2), f, torch.ones_like(f)).prod(dim=1)  # per-PE temporal loops
    n_sp = ceil(bound / (s * f_pe))
    steps = (n_sp - 1) * f_pe + torch.minimum(f_pe, bound - (n_sp - 1) * s * f_pe)
    compute = steps.prod(dim=1)
    port_cycles = port / 8.0 / x.bandwidth
    db_parent = not_db <= 0
    zero = torch.zeros_like(port_cycles)
    serial = torch.where(db_parent, zero, port_cycles).sum(dim=1)
    # a double-buffered port loads the first input tiles before compute starts and stores the last
    # output tiles after it ends; everything else it moves overlaps compute
    fill_p = torch.where(db_parent, fill / 8.0 / x.bandwidth, zero)
    drain_p = torch.where(db_parent, drain / 8.0 / x.bandwidth, zero)
    overlapped = torch.where(db_parent, torch.relu(port_cycles - fill_p - drain_p), zero).amax(dim=1)
    fill_cycles, drain_cycles = fill_p.sum(dim=1), drain_p.sum(dim=1)
    stall = torch.relu(overlapped - compute) + serial
    cycles = compute + stall + fill_cycles + drain_cycles + x.pipeline_depth

    level_energy = reads * x.e_read + writes * x.e_write
    mac_energy = macs * x.e_mac
    pes = x.rows * x.cols
    return CostOutputs(
        macs=macs,
        cycles=cycles,
        compute_cycles=compute,
        stall_cycles=stall,
        fill_cycles=fill_cycles,
        drain_cycles=drain_cycles,
        energy_pj=mac_energy + level_energy.sum(dim=1),
        mac_energy_pj=mac_energy * ones,
        level_energy_pj=level_energy,
        words_in=words_in,
        words_out=words_out,
        reads_bits=reads,
        writes_bits=writes,
        port_cycles=port_cycles,
        tile_bytes=tile_bytes,
        overflow_bytes=overflow,
        covered=covered,
        utilization=macs / (cycles * pes),
        spatial_utilization=macs / (compute * pes),
    )


def expected(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Probability-weighted cost of discrete options: probs [..., K] x values [..., K] -> [...]."""
    return (probs * values).sum(dim=-1)
