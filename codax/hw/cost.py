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
- Double-buffered levels load their first input tiles before compute starts (fill) and store their
  last output tiles after it ends (drain); streamed weights (`dram.stream_weights`) overlap their
  first tile with compute like the rest of their traffic.
- Outputs leave level h once per visit; when reduction loops sit outside h, all but the first visit
  of an output tile also read the partial sums back. Partial sums move at accumulator width; the
  final outputs written to DRAM at output width.
- Each MAC reads W and I and updates O in the innermost level holding each operand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from codax.hw.encode import CostInputs
from codax.ir import DIMS, OPERANDS, RELEVANT
from codax.ir.descriptor import WORDS as DESCRIPTOR_WORDS

_D = {d: i for i, d in enumerate(DIMS)}
_REL = {x: torch.tensor([d in RELEVANT[x] for d in DIMS]) for x in OPERANDS}
N_, G_, K_, C_, P_, Q_, R_, S_ = (_D[d] for d in DIMS)


@dataclass
class CostOutputs:
    macs: torch.Tensor  # [B] valid multiply-accumulates
    cycles: torch.Tensor  # [B] latency
    compute_cycles: torch.Tensor  # [B] PE-array steps (the compute task adds a pipeline fill per run)
    stall_cycles: torch.Tensor  # [B] transfers that do not overlap compute
    fill_cycles: torch.Tensor  # [B] first input tiles of double-buffered levels, before compute starts
    drain_cycles: torch.Tensor  # [B] last output tiles of double-buffered levels, after compute ends
    fetch_cycles: torch.Tensor  # [B] the descriptor's fetch through the DRAM port (a call on its own)
    dram_beats: torch.Tensor  # [B] beats the DRAM port moves: the tiles' and the descriptor's
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


def _beats(axes, bits, beat_bits):
    """Beats of a DRAM port `beat_bits` wide that one tile's elements touch, expected over where the
    tile starts in a beat. `axes` lists the tensor's axes outermost first, each (count, span, pitch):
    the sub-blocks read along it, the elements it spans (gaps included) and its DRAM pitch in elements
    (the innermost pitch is 1). A run of L bits starting at a uniformly random element boundary touches
    1 + (L - bits) / beat_bits beats on average; a block of sub-blocks costs either their beats one by
    one or, when they lie closer than a beat, the beats of its whole span: the fewer."""
    span = axes[-1][1]
    beats = 1.0 + (span - 1.0) * bits / beat_bits
    extent = span
    for count, span, pitch in reversed(axes[:-1]):
        extent = (span - 1.0) * pitch + extent
        beats = torch.minimum(count * beats, 1.0 + (extent - 1.0) * bits / beat_bits)
    return beats


def _row_major(e: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> list[tuple]:
    """`_beats` axes of a dense row-major tensor over `dims` (outermost first): a tile of extents e
    (every element read) in a tensor of extents b."""
    axes = []
    for i, d in enumerate(dims):
        pitch = 1.0
        for inner in dims[i + 1 :]:
            pitch = pitch * b[inner]
        axes.append((e[d], e[d], pitch))
    return axes


def _transfer_words(X: str, win: tuple, bound: torch.Tensor, tiles: torch.Tensor, ceil) -> torch.Tensor:
    """Words of operand X moved over all visits, for J child tiles at once: tiles [J, 8, B] -> [J, B].
    Tiles lie on a grid, so a relevant dim's extents add up to its bound, an irrelevant dim counts
    its tiles. win = (win_s, win_d), each [2, B]: the input window's collision periods per axis."""
    n = ceil(bound / tiles)  # [J, 8, B] tiles per dim
    if X == "I":
        hs, ws = (
            _window_sum(bound[o], tiles[:, o], n[:, o], bound[k], tiles[:, k], n[:, k], win[0][a], win[1][a])
            for a, o, k in ((0, P_, R_), (1, Q_, S_))  # rows: output rows x kernel rows; cols likewise
        )
        return n[:, K_] * bound[N_] * bound[G_] * bound[C_] * hs * ws
    return torch.where(_REL[X].view(1, 8, 1), bound, n).prod(dim=1)


@dataclass(frozen=True)
class Structure:
    """What the batch's hardware fixes about the loop nest: which level holds which operand, and
    where the spatial fan-out sits. The analysis is specialised on it (operands a level does not
    hold cost nothing to skip, parents are known levels), so points are evaluated in groups that
    share one."""

    holds: tuple[tuple[bool, bool, bool], ...]  # [L][W, I, O]
    spatial_level: int

    def parent(self, h: int, xi: int) -> int:
        """The nearest level outside h that holds operand xi (DRAM holds all)."""
        return max(lv for lv in range(h) if self.holds[lv][xi])

    def innermost(self, xi: int) -> int:
        return max(lv for lv in range(len(self.holds)) if self.holds[lv][xi])


def _dram_pipeline(ov, store_ov, work, by_op, lat_by_op, rank0, active0, n_dims, agg, bound, s, L, ceil):
    """Time of the DRAM port's overlapped loads `ov` [B] (the load task's time after the fill; `by_op`
    and `lat_by_op` split it per operand) and the compute task's `work` [B] (steps, pipeline fills,
    serial stalls) as the two stages of the engine's ping-pong pipeline over the outer tiles: loading
    tile k+1 overlaps computing tile k, pair by pair; the store task's overlapped time `store_ov`
    follows the first tile's compute.

    The outer tiles come in passes of the innermost DRAM loop (dim d, n_d trips): n_d - 1 full tiles
    of extent t and a last one of r = B_d - (n_d - 1) t. A tile's compute and the traffic of the
    operands relevant to d (A) scale with its extent along d; the operands irrelevant to d (Bp) load
    once per pass, with its first tile. The overlapped traffic is every load but the very first
    (the fill); a transfer's DRAM latency does not scale with its extent, and a tile's compute scales
    with its steps along d, ceil(extent / spatial factor), not with its extent. Per pass the pairs cost
      (n_d - 2) max(A_f, C_f) + max(A_e, C_f) + max(A_f + Bp, C_e)
    (the last one overlaps the next pass's first load with this pass's last compute); the layer's
    last pair is only its last compute. Without an edge tile this is max(n C, (n - 1) L + C), the
    steady-state bound; with one, long loads meeting short computes (and the reverse) cost what the
    ping-pong handshake makes them cost instead of their averages."""
    if L < 2:
        return torch.zeros_like(ov)
    score = torch.where(active0, rank0, -1.0)  # [8, B]
    d = score.argmax(dim=0, keepdim=True)  # [1, B] the innermost active DRAM loop's dim
    has = active0.any(dim=0)
    n_d = torch.where(has, n_dims.gather(0, d)[0], 1.0)
    t = agg[1].gather(0, d)[0]
    b = bound.expand_as(agg[1]).gather(0, d)[0]
    r = torch.where(has, b - (n_d - 1.0) * t, t)
    mean = torch.where(has, b / n_d, t)
    total = sum(by_op.values())
    rel_of = {X: _REL[X].to(total.dtype).gather(0, d[0]) for X in OPERANDS}
    rel = sum(by_op[X] * rel_of[X] for X in OPERANDS)
    a_share = torch.where(total > 0, rel / total.clamp(min=1e-30), 1.0)
    lat = sum(lat_by_op[X] * rel_of[X] for X in OPERANDS)
    lat_share = torch.where(rel > 0, lat / rel.clamp(min=1e-30), 0.0)  # of the relevant traffic
    tiles = n_dims.prod(dim=0)
    passes = tiles / n_d
    # a tile's load relative to the mean tile's: its latency plus its beats, which scale with extent
    phi_f = lat_share + (1.0 - lat_share) * t / mean
    phi_e = lat_share + (1.0 - lat_share) * r / mean
    # the overlapped traffic is every load but the first tile's (that one, a full tile, is the fill):
    # ov_A = tiles x mean - the first tile's
    a = ov * a_share / (tiles - phi_f).clamp(min=1.0)
    bp = ov * (1.0 - a_share) / (passes - 1.0).clamp(min=1.0)
    a_f, a_e = a * phi_f, a * phi_e
    sp = s.expand_as(agg[1]).gather(0, d)[0]
    steps_f, steps_e = ceil(t / sp), ceil(r / sp)
    steps_mean = ((n_d - 1.0) * steps_f + steps_e) / n_d
    c_f, c_e = work / tiles * (steps_f / steps_mean), work / tiles * (steps_e / steps_mean)
    wrap = torch.maximum(a_f + bp, c_e)
    pairs = (n_d - 2.0) * torch.maximum(a_f, c_f) + torch.maximum(a_e, c_f) + wrap
    # the store task is a third stage: its stores follow one another from the first tile's compute
    # on, so the last one (the drain) cannot start before the first compute and every earlier store
    # and the load task's own time bounds it: its last load, then the last tile's compute
    pipeline = torch.maximum(passes * pairs - wrap + c_e, ov + c_e)
    return torch.maximum(pipeline, c_f + store_ov)


def _structure_groups(x: CostInputs) -> list[tuple[Structure, torch.Tensor | None]]:
    """The distinct structures of the batch, each with the indices of its points (None: all)."""
    L = x.levels
    key = torch.cat([(x.holds > 0).flatten(1).long(), x.spatial_level.view(-1, 1).long()], dim=1)
    if key.shape[0] == 1 or bool((key == key[:1]).all()):
        groups = [(key[0], None)]
    else:
        uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
        groups = [(u, torch.nonzero(inverse == g).flatten()) for g, u in enumerate(uniq)]
    out = []
    for k, idx in groups:
        v = [bool(b) for b in k[:-1].tolist()]
        holds = tuple(tuple(v[3 * lv : 3 * lv + 3]) for lv in range(L))
        out.append((Structure(holds, int(k[-1])), idx))
    return out


def cost_core(x: CostInputs, relaxed: bool = False) -> CostOutputs:
    """Costs of a batch of points [B]. The mapping tensors (factor, rank, db, spatial) carry the
    batch; any layer or hardware tensor may have batch size 1 and is then shared by every point.

    Points are analysed in groups of equal `Structure` (one group in the usual case of one engine
    type); `cost_core_structured` is the analysis itself, which `torch.compile` can specialise."""
    groups = _structure_groups(x)
    if len(groups) == 1:
        return cost_core_structured(x, groups[0][0], relaxed)
    parts = [(idx, cost_core_structured(x.index(idx), st, relaxed)) for st, idx in groups]
    merged = {}
    for f in fields(CostOutputs):
        first = getattr(parts[0][1], f.name)
        out = torch.empty((x.batch, *first.shape[1:]), dtype=first.dtype)
        for idx, o in parts:
            out = out.index_copy(0, idx, getattr(o, f.name))
        merged[f.name] = out
    return CostOutputs(**merged)


def _batch_last(t: torch.Tensor) -> torch.Tensor:
    """[B, ...] -> [..., B] (a view). The analysis runs with the batch innermost: every op is then a
    loop over the points, which compiles to vector code whatever the small dims are, fastest when
    the inputs are stored batch-innermost too (`CostInputs.batch_innermost`)."""
    return t.movedim(0, -1)


def _batch_first(t: torch.Tensor) -> torch.Tensor:
    """[..., B] -> [B, ...] as a view (the documented shapes of CostOutputs, without a copy)."""
    return t.movedim(-1, 0)


def cost_core_structured(x: CostInputs, st: Structure, relaxed: bool = False) -> CostOutputs:
    """`cost_core` for a batch whose points all have structure `st`. Internally every tensor is
    batch-last: [L, 8, B] factors, [8, B] bounds, [L, 3, B] per-operand values, [B] scalars."""
    ceil = (lambda t: t) if relaxed else torch.ceil
    B, L, _ = x.factor.shape
    dt = x.factor.dtype
    T = _batch_last
    f, s, bound, rank = T(x.factor), T(x.spatial), T(x.bound), T(x.rank)  # [L,8,B] [8,B] [8,B|1] [L,8,B]
    win = (T(x.win_s), T(x.win_d))
    stride, dil, in_pad = T(x.stride), T(x.dilation), T(x.in_pad)
    db, holds, bandwidth = T(x.db), T(x.holds), T(x.bandwidth)
    sl = st.spatial_level
    macs = bound.prod(dim=0)
    ones = torch.ones(B, dtype=dt)

    # --- tiles held at each level (capacity) ------------------------------------------------------
    suffix_l = [f[L - 1]]  # prod of factors at levels >= l
    for lv in range(L - 2, -1, -1):
        suffix_l.insert(0, f[lv] * suffix_l[0])
    suffix = torch.stack(suffix_l)
    agg = torch.minimum(suffix * s, bound)  # the PE array's tiles taken together
    # shared levels hold the PE array's tiles together, per-PE levels one PE's tile
    held_tile = torch.minimum(torch.cat([agg[: sl + 1], suffix[sl + 1 :]]), bound)

    def footprints(e: torch.Tensor, moved: bool = False) -> torch.Tensor:  # e [L, 8, B] -> words [L, 3, B]
        """Words of each operand's tile: as held in a buffer (dense input window), or as moved
        (`moved`: the distinct input rows and cols the window touches)."""
        if moved:
            h = _distinct(e[:, P_], e[:, R_], win[0][0], win[1][0])
            w = _distinct(e[:, Q_], e[:, S_], win[0][1], win[1][1])
        else:
            h = torch.minimum(_dense_window(e[:, P_], e[:, R_], stride[0], dil[0]), in_pad[0])
            w = torch.minimum(_dense_window(e[:, Q_], e[:, S_], stride[1], dil[1]), in_pad[1])
        wt = e[:, G_] * e[:, K_] * e[:, C_] * e[:, R_] * e[:, S_]
        it = e[:, N_] * e[:, G_] * e[:, C_] * h * w
        ot = e[:, N_] * e[:, G_] * e[:, K_] * e[:, P_] * e[:, Q_]
        return torch.stack([wt, it, ot], dim=1)

    tile_bits = torch.stack([x.w_bits, x.a_bits, x.acc_bits])  # [3, B|1]; O held as accumulators
    tile_bytes = ceil(footprints(held_tile) * tile_bits / 8.0)  # whole bytes, as a buffer is allocated
    need = tile_bytes * (1.0 + db).unsqueeze(1) * holds
    over_op = (need - T(x.cap_op)).amax(dim=1)
    over_shared = need.sum(dim=1) - T(x.cap_shared)
    overflow = torch.maximum(over_op, over_shared)
    overflow = torch.cat([torch.full_like(overflow[:1], -1.0), overflow[1:]])  # DRAM is unbounded
    covered = (f.prod(dim=0) * s >= bound - 1e-9).all(dim=0)
    agg_words = footprints(agg, moved=True)

    in_hw = T(x.in_hw)
    mm_layout, w_layout = T(x.mm_layout), T(x.w_layout)

    def _tile_beats(X: str, e: torch.Tensor, bits, beat_bits, dram: bool) -> torch.Tensor:
        """Beats of one DRAM tile of X with mean extents e [8, B], in X's DRAM layout (`dram`: the
        output tensor's; else the dense partial-sum scratch [N][G*K][P][Q])."""

        def beats(dims):  # a dense row-major layout over dims
            return _beats(_row_major(e, bound, dims), bits, beat_bits)

        if X == "W":
            tile = _beats([(1.0, e[G_] * e[K_] * e[C_] * e[R_] * e[S_], 1.0)], bits, beat_bits)
            gck, gkc = beats((G_, C_, K_)), beats((G_, K_, C_))
            return torch.where(w_layout > 1.5, gkc, torch.where(w_layout > 0.5, gck, tile))
        if X == "I":
            H, W = in_hw[0], in_hw[1]
            rows = torch.minimum(_dense_window(e[P_], e[R_], stride[0], dil[0]), H)
            cols = torch.minimum(_dense_window(e[Q_], e[S_], stride[1], dil[1]), W)
            n_rows = torch.minimum(_distinct(e[P_], e[R_], win[0][0], win[1][0]), rows)
            n_cols = torch.minimum(_distinct(e[Q_], e[S_], win[0][1], win[1][1]), cols)
            plane = H * W
            conv = _beats(
                [(e[N_], e[N_], bound[G_] * bound[C_] * plane), (e[G_], e[G_], bound[C_] * plane),
                 (e[C_], e[C_], plane), (n_rows, rows, W), (n_cols, cols, 1.0)],
                bits, beat_bits,
            )  # fmt: skip
            return torch.where(mm_layout > 0.5, beats((G_, N_, C_)), conv)
        conv = beats((N_, G_, K_, P_, Q_))
        return torch.where(mm_layout > 0.5, beats((G_, N_, K_)), conv) if dram else conv

    # --- transfers at every boundary (operand X into level h) --------------------------------------
    # per level, the terms of its reads, writes, port traffic, fill and drain (bits), summed at the end
    terms = {k: [[] for _ in range(L)] for k in ("reads", "writes", "port", "fill", "drain")}
    fed = [[] for _ in range(L)]  # the children each level feeds
    # per per-PE level: bits written into it (fills, partial-sum reloads) and the time its parents'
    # ports spend on those transfers
    pe_fills = {h: ([], []) for h in range(sl + 1, L)}
    zeros = torch.zeros(B, dtype=dt)
    words_in = [[zeros] * 3 for _ in range(L)]
    words_out = [[zeros] * 3 for _ in range(L)]
    active = f > 1.0 + 1e-9  # trip-count-1 loops are absent
    o_size = bound[N_] * bound[G_] * bound[K_] * bound[P_] * bound[Q_]
    op_bits = {"W": x.w_bits, "I": x.a_bits, "O": x.acc_bits}
    dram_loads = {X: zeros for X in OPERANDS}  # the DRAM port's loads per operand, in bits of port time
    dram_lat = {X: zeros for X in OPERANDS}  # their latency part
    dram_beat_bits = zeros  # its beats, as port time in bits
    dram_load_bits = dram_store_bits = zeros  # its load and store tasks' time (beats and latencies)
    pes_used = s.prod(dim=0)
    beat_bits = 8.0 * bandwidth[0]  # the DRAM port's beat
    runs = torch.ones(B, dtype=dt)  # the compute task's pipelined loops: one per run between transfers
    for xi, X in enumerate(OPERANDS):
        children = [h for h in range(1, L) if st.holds[h][xi]]
        if not children:
            continue
        # per level, the rank of the innermost active loop relevant to X (-1: none); the loops after
        # it reuse X's tile in place
        last_rank = torch.where(active & _REL[X].view(1, 8, 1), rank, -1.0).amax(dim=1)  # [L, B]
        after = torch.where(rank > last_rank.unsqueeze(1), f, 1.0)  # [L, 8, B]
        reuse = torch.ones_like(s)  # [8, B] trip counts of the loops outside h that reuse X's tile
        tiles = []  # child tiles: the PE array's (inner * s) per child, then one PE's where needed
        firings = []  # per child: how many tiles move into it (one transfer each)
        for h in range(1, children[-1] + 1):
            # outward from h: every loop up to the nearest level with a relevant loop, then the loops
            # after its innermost relevant one
            reuse = torch.where(last_rank[h - 1] >= 0, after[h - 1], f[h - 1] * reuse)
            if h in children:
                tiles.append(suffix[h] * reuse)  # [8, B] one PE's child tile
                # the transfer fires once per child tile of the array; the engine's compute task runs
                # one pipelined loop between consecutive transfers
                firings.append(ceil(bound / (tiles[-1] * s)).clamp(min=1.0).prod(dim=0))
                runs = torch.maximum(runs, firings[-1])
        parents = [st.parent(h, xi) for h in children]
        # shared levels move the PE array's tiles together; per-PE memories are accessed once per
        # PE copy (multicast data lands in several PEs, overlapping input windows load in each)
        per_pe = [j for j, h in enumerate(children) if max(h, parents[j]) > sl]
        moved = _transfer_words(
            X, win, bound, torch.stack([t * s for t in tiles] + [tiles[j] for j in per_pe]), ceil
        )
        bits = op_bits[X]
        for j, (h, parent) in enumerate(zip(children, parents)):
            fed[parent].append(h)
            words = moved[j]
            copies = moved[len(children) + per_pe.index(j)] if j in per_pe else words
            child_words = copies if h > sl else words
            parent_words = copies if parent > sl else words
            if X == "O":
                # every visit but the first of an output tile reads the partial sums back
                revisit = torch.where(words > 0, 1.0 - o_size / words.clamp(min=1.0), 0.0)
                reload = words - o_size
                up = o_size * x.o_bits + reload * bits if parent == 0 else words * bits
                words_out[h][xi], words_in[h][xi] = words, reload
                terms["reads"][h].append(child_words * bits)
                terms["reads"][parent].append(parent_words * revisit * bits)
                if parent == 0:
                    terms["reads"][0].append(o_size * x.o_bits * x.has_res)
                terms["writes"][parent].append(parent_words * bits if parent > sl else up)
                terms["writes"][h].append(child_words * revisit * bits)
                moved_bits, into = up + reload * bits, child_words * revisit * bits
                terms["drain"][parent].append(agg_words[h, xi] * (x.o_bits if parent == 0 else bits))
            else:
                words_in[h][xi] = words
                terms["reads"][parent].append(parent_words * bits)
                terms["writes"][h].append(child_words * bits)
                moved_bits, into = words * bits, child_words * bits
                # streamed weights: the first tile overlaps compute with the rest of their traffic
                first = agg_words[h, xi] * bits * (1.0 - x.w_stream) if X == "W" else agg_words[h, xi] * bits
                terms["fill"][parent].append(first)
            port_bits = moved_bits
            if parent == 0:
                # the DRAM port moves whole beats: a tile's time is the beats its elements touch in
                # the tensor's DRAM layout (docs/cost_model.md, "DRAM beats"), as port time in bits
                dram_tile = torch.minimum(tiles[j] * s, bound)
                n_tiles = ceil(bound / dram_tile).clamp(min=1.0)
                ext = bound / n_tiles  # mean extents of the tiles moved (edge tiles are smaller)
                if X == "O":
                    # final values at output width in the output's layout; partial sums (stored on
                    # every visit but the last, read back on every one but the first) at accumulator
                    # width in the dense scratch
                    distinct = torch.where(_REL[X].view(8, 1), n_tiles, 1.0).prod(dim=0)
                    # a fused residual is read beside each final output tile, at output width in the
                    # output's layout (the engine's epilogue); its bits join the DRAM reads
                    final = _tile_beats(X, ext, x.o_bits, beat_bits, dram=True) * (1.0 + x.has_res)
                    partial = _tile_beats(X, ext, bits, beat_bits, dram=False)
                    port_bits = (distinct * final + 2.0 * (firings[j] - distinct) * partial) * beat_bits
                    reloads = (firings[j] - distinct) * partial * beat_bits
                    # the drain stores the last output tile: the grid's edge tile where it is smaller
                    last = _tile_beats(X, bound - (n_tiles - 1.0) * dram_tile, x.o_bits, beat_bits, dram=True)
                    last = last * (1.0 + x.has_res)
                    terms["drain"][0].append(last * beat_bits - agg_words[h, xi] * x.o_bits)
                else:
                    tile_beats = _tile_beats(X, ext, bits, beat_bits, dram=True)
                    port_bits = firings[j] * tile_beats * beat_bits
                    first_share = (1.0 - x.w_stream) if X == "W" else 1.0
                    # the fill loads the first tile: a full one (the grid's edge tile comes last)
                    first = _tile_beats(X, dram_tile, bits, beat_bits, dram=True)
                    terms["fill"][0].append((first * beat_bits - agg_words[h, xi] * bits) * first_share)
                dram_beat_bits = dram_beat_bits + port_bits
                # every DRAM transfer waits the AXI round trip once (its beats follow); an output tile
                # goes out once per visit and comes back on every revisit
                n_dram = firings[j] * (1.0 + revisit) if X == "O" else firings[j]
                lat_bits = x.axi_latency * beat_bits  # the latency as port time, in bits
                port_bits = port_bits + n_dram * lat_bits
                # the port's load task and its store task each wait their own transfers' latency;
                # only the beats share the port
                if X == "O":
                    load_lat = (n_dram - firings[j]) * lat_bits
                    loads = reloads + load_lat
                    dram_store_bits = dram_store_bits + port_bits - loads
                else:
                    loads, load_lat = port_bits, n_dram * lat_bits
                dram_load_bits = dram_load_bits + loads
                dram_loads[X], dram_lat[X] = dram_loads[X] + loads, dram_lat[X] + load_lat
                # the first tile's round trip comes before compute, the last store's after it
                terms["drain" if X == "O" else "fill"][0].append(lat_bits * torch.ones_like(moved_bits))
            terms["port"][parent].append(port_bits)
            if h > sl:
                pe_fills[h][0].append(into)
                pe_fills[h][1].append(port_bits / 8.0 / bandwidth[parent])

    # MAC operand accesses in the innermost level holding each operand. A shared level feeds the
    # whole array: one access serves the PEs that the array's irrelevant dims multicast it to.
    for xi, X in enumerate(OPERANDS):
        lv = st.innermost(xi)
        if lv > sl:
            accesses = macs
        else:
            accesses = macs / torch.where(_REL[X].view(8, 1), torch.ones_like(s), s).prod(dim=0)
        terms["reads"][lv].append(accesses * op_bits[X])
        if X == "O":
            terms["writes"][lv].append(accesses * x.acc_bits)

    def per_level(key: str) -> torch.Tensor:  # [L, B], each level's terms added in order
        cols = []
        for t in terms[key]:
            acc = zeros
            for v in t:
                acc = acc + v
            cols.append(acc)
        return torch.stack(cols)

    reads, writes, port = per_level("reads"), per_level("writes"), per_level("port")
    # a port overlaps its traffic with compute only when every child it feeds is double-buffered
    not_db = torch.stack([sum((1.0 - db[h] for h in fed[lv]), zeros) for lv in range(L)])
    # ... and then its load and store tasks run side by side, each waiting its own transfers' DRAM
    # latency: only the beats share the port. Single-buffered, each transfer waits for the one before.
    dram_busy = torch.maximum(dram_beat_bits, torch.maximum(dram_load_bits, dram_store_bits))
    port = torch.cat([torch.where(not_db[0] <= 0, dram_busy, port[0]).unsqueeze(0), port[1:]])
    fill, drain = per_level("fill"), per_level("drain")

    # --- cycles -------------------------------------------------------------------------------------
    f_pe = suffix[sl + 1] if sl + 1 < L else torch.ones_like(s)  # per-PE temporal loops
    n_sp = ceil(bound / (s * f_pe))
    steps = (n_sp - 1) * f_pe + torch.minimum(f_pe, bound - (n_sp - 1) * s * f_pe)
    compute = steps.prod(dim=0)
    port_cycles = port / 8.0 / bandwidth
    db_parent = not_db <= 0
    zero = torch.zeros_like(port_cycles)
    serial = torch.where(db_parent, zero, port_cycles).sum(dim=0)
    # a double-buffered port loads the first input tiles before compute starts and stores the last
    # output tiles after it ends; everything else it moves overlaps compute
    fill_p = torch.where(db_parent, fill / 8.0 / bandwidth, zero)
    drain_p = torch.where(db_parent, drain / 8.0 / bandwidth, zero)
    ov_ports = torch.where(db_parent, torch.relu(port_cycles - fill_p - drain_p), zero)
    # the DRAM port's load task does the fill, its store task the drain: what each overlaps is the
    # rest of its own time, and together no more than their beats
    load_ov = torch.where(db_parent[0], (dram_load_bits / beat_bits - fill_p[0]).relu(), zero[0])
    store_ov = torch.where(db_parent[0], (dram_store_bits / beat_bits - drain_p[0]).relu(), zero[0])
    beats_ov = torch.where(
        db_parent[0], (dram_beat_bits / beat_bits - fill_p[0] - drain_p[0]).relu(), zero[0]
    )
    dram_ov = torch.maximum(beats_ov, torch.maximum(load_ov, store_ov))
    overlapped = torch.cat([torch.zeros_like(ov_ports[:1]), ov_ports[1:]]).amax(dim=0)  # on-chip ports
    fill_cycles, drain_cycles = fill_p.sum(dim=0), drain_p.sum(dim=0)
    # A per-PE memory is written through its own port too, every PE in parallel: a transfer into it
    # takes at least its bits per PE at that port's bandwidth (e.g. one cycle per partial-sum reload
    # into a one-word output register), overlapped with compute only when the level is
    # double-buffered; a single-buffered level stalls for what its port needs beyond its parents'.
    for h, (into, over_parent) in pe_fills.items():
        if not into:
            continue
        own = sum(into) / pes_used / 8.0 / bandwidth[h]
        overlapped = torch.where(db[h] > 0, torch.maximum(overlapped, own), overlapped)
        serial = serial + torch.where(db[h] > 0, 0.0, torch.relu(own - sum(over_parent)))
    # serial transfers stall the compute task; the overlapped ports run beside it (each port is its
    # own DMA: a single-buffered child's port does not hold up the traffic of another port). When the
    # ports are the bottleneck, the last outer tile's compute follows its load: nothing is left to
    # overlap it with (the ping-pong handshake of the engine's load and compute tasks); streamed
    # weights enter the array as they arrive, so their last tile computes while it loads.
    # The compute task: its PE-array steps, one per cycle, plus the fill of the MAC pipeline once per
    # run of steps between two transfers (each run is one pipelined loop: trip count x II + depth).
    busy = compute + runs * x.pipeline_depth
    n_dims = ceil(bound / agg[1]) if L > 1 else torch.ones_like(bound)
    n_outer = n_dims.prod(dim=0)
    tail = torch.where(overlapped > 0, busy / n_outer, torch.zeros_like(compute)) * (1.0 - x.w_stream)
    dram_pipe = _dram_pipeline(
        load_ov, store_ov, busy + serial, dram_loads, dram_lat,
        rank[0], active[0], n_dims, agg, bound, s, L, ceil,
    )  # fmt: skip
    # the port cannot end before its beats do; streamed weights: the last tile computes as it arrives,
    # the port's traffic simply overlaps
    dram_pipe = torch.where(x.w_stream > 0, dram_ov, torch.maximum(dram_pipe, beats_ov)) * (dram_ov > 0)
    onchip = overlapped + tail  # the on-chip ports' bound, as before
    stall = (torch.maximum(onchip, dram_pipe) - busy - serial).relu() + serial
    # a call on its own (a program of one call) first fetches its descriptor through the DRAM port:
    # one burst, latency and beats. In a run of calls the call before prefetches it instead
    # (chained_cycles: codax.hw.evaluate.evaluate_network, the search's objective).
    desc_beats = descriptor_beats(bandwidth[0]) * ones
    fetch = x.axi_latency + desc_beats
    cycles = fetch + busy + stall + fill_cycles + drain_cycles

    level_energy = reads * T(x.e_read) + writes * T(x.e_write)
    mac_energy = macs * x.e_mac
    pes = x.rows * x.cols
    bf = _batch_first
    return CostOutputs(
        macs=macs * ones,
        cycles=cycles,
        compute_cycles=compute,
        stall_cycles=stall,
        fill_cycles=fill_cycles,
        drain_cycles=drain_cycles,
        fetch_cycles=fetch,
        dram_beats=dram_beat_bits / beat_bits + desc_beats,
        energy_pj=mac_energy + level_energy.sum(dim=0),
        mac_energy_pj=mac_energy * ones,
        level_energy_pj=bf(level_energy),
        words_in=bf(torch.stack([torch.stack(r) for r in words_in])),
        words_out=bf(torch.stack([torch.stack(r) for r in words_out])),
        reads_bits=bf(reads),
        writes_bits=bf(writes),
        port_cycles=bf(port_cycles),
        tile_bytes=bf(tile_bytes),
        overflow_bytes=bf(overflow),
        covered=covered,
        utilization=macs / (cycles * pes),
        spatial_utilization=macs / (compute * pes),
    )


# --- the descriptor fetch across calls --------------------------------------------------------------
# The engine prefetches the next call's descriptor while a layer runs (codax_engine.h, "the descriptor
# fetch"): the prefetch is the DRAM port's first transfer of the layer (its beats delay the layer's own
# transfers by as many cycles) and is in at F = latency + beats after the layer starts. A run's first
# call, and a call after one on another engine, fetches its own descriptor first (F); every other call
# waits only for what of the prefetch outlasted the call before: relu(F - that call's cycles).
def descriptor_beats(dram_bandwidth):
    """Beats one descriptor (DESCRIPTOR_WORDS int32 words) takes on a DRAM port of this many bytes."""
    if isinstance(dram_bandwidth, torch.Tensor):
        return torch.ceil(DESCRIPTOR_WORDS * 4.0 / dram_bandwidth)
    return float(math.ceil(DESCRIPTOR_WORDS * 4.0 / float(dram_bandwidth)))


def descriptor_fetch_cycles(dram_latency: float, dram_bandwidth: float) -> float:
    """F: one descriptor's round trip through the DRAM port (latency, then its beats)."""
    return float(dram_latency) + descriptor_beats(dram_bandwidth)


def chained_cycles(own: torch.Tensor, fetch, prefetch_beats, last: torch.Tensor) -> torch.Tensor:
    """Cycles of calls in a run on one engine, the run's fetch F counted once apart: `own` [..., n]
    each call's cycles with its descriptor on chip and no prefetch; `last` [..., n] (bool or 0/1) the
    run's last call, which prefetches nothing. Every other call prefetches the next one (its own
    cycles grow by the prefetch's beats) and the next waits relu(F - those cycles): together
    max(own + beats, F). The run's total is F + the sum over its calls."""
    with_prefetch = torch.maximum(own + prefetch_beats, torch.as_tensor(fetch, dtype=own.dtype))
    return torch.where(torch.as_tensor(last, dtype=torch.bool), own, with_prefetch)


def expected(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Probability-weighted cost of discrete options: probs [..., K] x values [..., K] -> [...]."""
    return (probs * values).sum(dim=-1)
