"""Hardware cost of the supernet for the co-search, through codax's cost model (`cost_core`).

Every (layer of a candidate op) x (weight bits, activation bits) x (accelerator point) x (mapping
template) is one CostInputs row. Mapping templates are per-layer tilings filled greedily into the
accelerator's buffers, one per DRAM loop order (output-, weight-, input-reuse); the per-layer
mapping logits choose among them. The exact mapper is run separately on the derived design.

The cost of an accelerator point does not depend on any logit, so it is computed once per point
and cached: a search step only contracts cached tables with the op, bit and mapping weights, on the
points the accelerator distribution gives (acceldist.py: its samples, or all its points).
"""

from __future__ import annotations

import math

import torch

from codax.hw.cost import cost_core
from codax.hw.encode import DTYPE, CostInputs, encode_layer, stack
from codax.hw.energy import dram_pj_per_bit, mac_pj, sram_pj_per_bit
from codax.hw.resources import asic_area_um2, bram18, dsp_per_mac
from codax.ir import DIMS, Layer, Mapping
from codax.search.space import DATAFLOWS, SUBS, AccelSpace, NetworkSpace, technology_of

_D = {d: i for i, d in enumerate(DIMS)}
# DRAM loop orders (outermost first) and the order in which the buffer tile grows, per template
TEMPLATES: list[tuple[str, list[str], list[str]]] = [
    ("out-reuse", ["N", "G", "K", "P", "Q", "C", "R", "S"], ["C", "K", "G", "P", "Q"]),
    ("weight-reuse", ["N", "G", "K", "C", "R", "S", "P", "Q"], ["K", "G", "C", "P", "Q"]),
    ("input-reuse", ["N", "G", "C", "P", "Q", "R", "S", "K"], ["P", "Q", "C", "G", "K"]),
]
INFEASIBLE = 10.0  # cost multiplier of a point whose smallest tile overflows a buffer


class LayerTable:
    """All distinct MAC layers of the supernet, as tensors, with an index per (unit, op, sub)."""

    def __init__(self, net: NetworkSpace | None, bit_choices: list[int], layers: list[Layer] | None = None):
        """With `layers` (and net None): a table of exactly those layers, each at its own precision
        (one bit combination per row), e.g. to evaluate one derived network on many accelerators."""
        self.net, self.bits = net, list(bit_choices)
        self.layers: list[Layer] = []
        if layers is not None:
            self.layers = list(layers)
            self.index = torch.empty(0, 0, 0, dtype=torch.long)
            self._tensors()
            self.wb = torch.tensor([[float(la.precision.weight)] for la in layers], dtype=DTYPE)
            self.ab = torch.tensor([[float(la.precision.act)] for la in layers], dtype=DTYPE)
            return
        U, O, S = len(net.units), net.max_ops, len(SUBS)
        self.index = torch.full((U, O, S), -1, dtype=torch.long)
        self.macs = torch.zeros(U, O, dtype=DTYPE)
        seen: dict[tuple, int] = {}  # layers of equal shape share one row
        for u, unit in enumerate(net.units):
            for o, op in enumerate(unit.ops):
                for s, layer in unit.op_layers(op):
                    key = layer.shape_key()
                    if key not in seen:
                        seen[key] = len(self.layers)
                        self.layers.append(layer)
                    self.index[u, o, s] = seen[key]
                    self.macs[u, o] += layer.macs
        self._tensors()
        nb = len(self.bits)
        self.wb = torch.tensor([float(self.bits[i // nb]) for i in range(nb * nb)], dtype=DTYPE)
        self.ab = torch.tensor([float(self.bits[i % nb]) for i in range(nb * nb)], dtype=DTYPE)

    def bits_nb(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and activation bits per (layer, bit combination): [n, B] each."""
        n = len(self.layers)
        if self.wb.dim() == 2:
            return self.wb, self.ab
        return self.wb.view(1, -1).expand(n, -1), self.ab.view(1, -1).expand(n, -1)

    # the layer tensors of a CostInputs that do not depend on the searched widths, one row per layer
    GEOMETRY = (
        "bound",
        "stride",
        "dilation",
        "win_s",
        "win_d",
        "in_pad",
        "in_hw",
        "mm_layout",
        "w_layout",
        "has_res",
    )

    def _tensors(self) -> None:
        """The GEOMETRY tensors, [n, ...], from the cost model's own encoder (hw.encode.encode_layer)."""
        enc = [encode_layer(la) for la in self.layers]
        for k in self.GEOMETRY:
            setattr(self, k, torch.cat([e[k] for e in enc]))

    def spatial(self, space: AccelSpace, cfg: tuple[int, ...]) -> tuple[torch.Tensor, list[dict]]:
        """Spatial unrolling per layer for an engine point: factors [n, 8] and the ir form."""
        rows, cols = space.value(cfg, "rows"), space.value(cfg, "cols")
        rd, cd = DATAFLOWS[space.value(cfg, "dataflow")]
        sp = torch.ones(len(self.layers), 8, dtype=DTYPE)
        forms = []
        for i, la in enumerate(self.layers):
            form = {}
            rdim = next((d for d in rd if getattr(la, d) > 1), None)
            cdim = next((d for d in cd if getattr(la, d) > 1 and d != rdim), None)
            for axis, d, size in (("rows", rdim, rows), ("cols", cdim, cols)):
                if d is not None:
                    f = min(size, getattr(la, d))
                    sp[i, _D[d]] = f
                    form[axis] = (d, f)
            forms.append(form)
        return sp, forms


def _footprints(lt: LayerTable, ext: torch.Tensor, wb: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Bytes of the W, I, O tiles (O as 32-bit accumulators) for extents ext [n, B, M, 8]."""
    e = lambda d: ext[..., _D[d]]  # noqa: E731
    st = lambda a: lt.stride[:, a].view(-1, 1, 1)  # noqa: E731
    h = torch.minimum(
        (e("P") - 1) * st(0) + (e("R") - 1) * lt.dilation[:, 0].view(-1, 1, 1) + 1,
        lt.in_pad[:, 0].view(-1, 1, 1),
    )
    w = torch.minimum(
        (e("Q") - 1) * st(1) + (e("S") - 1) * lt.dilation[:, 1].view(-1, 1, 1) + 1,
        lt.in_pad[:, 1].view(-1, 1, 1),
    )
    W = e("G") * e("K") * e("C") * e("R") * e("S") * wb.unsqueeze(-1) / 8
    I_ = e("N") * e("G") * e("C") * h * w * ab.unsqueeze(-1) / 8
    O = e("N") * e("G") * e("K") * e("P") * e("Q") * 4.0
    return torch.stack([W, I_, O], dim=-1)


def template_tiles(lt: LayerTable, space: AccelSpace, cfg: tuple[int, ...], m_count: int):
    """Greedy buffer tiles for every layer x bits x template: (spatial [n,8], forms, buffer-level
    factors [n, B, M, 8])."""
    sp, forms = lt.spatial(space, cfg)
    n, B = len(lt.layers), lt.wb.shape[-1]
    caps = torch.tensor([space.value(cfg, f"buf_{op}") * 1024.0 for op in "WIO"], dtype=DTYPE)
    caps = caps / (2.0 if space.double_buffer(cfg) else 1.0)
    rem = torch.ceil(lt.bound / sp).view(n, 1, 1, 8).expand(n, B, m_count, 8)
    t = torch.ones(n, B, m_count, 8, dtype=DTYPE)
    spv, bound = sp.view(n, 1, 1, 8), lt.bound.view(n, 1, 1, 8)

    def fits(tt: torch.Tensor) -> torch.Tensor:
        return (_footprints(lt, torch.minimum(tt * spv, bound), *lt.bits_nb()) <= caps).all(-1)

    def grow(dims_per_m: list[str | None], full: bool) -> None:
        nonlocal t
        cand = t.clone()
        for m, d in enumerate(dims_per_m):
            if d is None:
                continue
            k = _D[d]
            cand[:, :, m, k] = rem[:, :, m, k] if full else torch.minimum(t[:, :, m, k] * 2, rem[:, :, m, k])
        ok = fits(cand)
        t = torch.where(ok.unsqueeze(-1), cand, t)

    grow(["R"] * m_count, True)
    grow(["S"] * m_count, True)
    for _ in range(11):
        for j in range(5):
            grow([TEMPLATES[m][2][j] for m in range(m_count)], False)
    return sp, forms, t


def configs_costs(
    lt: LayerTable, space: AccelSpace, cfgs: list[tuple[int, ...]], m_count: int, relaxed: bool
) -> list[torch.Tensor]:
    """config_costs of several engine points in one cost_core batch (the model's per-call overhead
    dominates at these sizes)."""
    if not cfgs:
        return []
    x = stack([_encode(lt, space, c, m_count) for c in cfgs])
    with torch.no_grad():
        out = cost_core(x, relaxed=relaxed)
    bad = 1.0 + (INFEASIBLE - 1.0) * (~out.legal).to(DTYPE)
    # a call's own cycles, its descriptor on chip: the objective charges the descriptor fetch across
    # the network's calls (codax.hw.cost.chained_cycles)
    res = torch.stack([(out.cycles - out.fetch_cycles) * bad, out.energy_pj * bad], dim=-1).to(torch.float32)
    n, B = len(lt.layers), lt.wb.shape[-1]
    return list(res.view(len(cfgs), n, B, m_count, 2).unbind(0))


def config_costs(
    lt: LayerTable, space: AccelSpace, cfg: tuple[int, ...], m_count: int, relaxed: bool
) -> torch.Tensor:
    """[n_layers, n_bit_combos, M, 2] (cycles, energy pJ) of every layer on one engine point; the
    cycles are each call's own, its descriptor on chip (the fetch is charged per network)."""
    return configs_costs(lt, space, [cfg], m_count, relaxed)[0]


def _encode(lt: LayerTable, space: AccelSpace, cfg: tuple[int, ...], m_count: int) -> CostInputs:
    sp, _, t = template_tiles(lt, space, cfg, m_count)
    n, B = len(lt.layers), lt.wb.shape[-1]
    P = n * B * m_count
    rem = torch.ceil(lt.bound / sp).view(n, 1, 1, 8)
    factor = torch.stack([torch.ceil(rem / t), t], dim=3).reshape(P, 2, 8)
    rank = torch.zeros(m_count, 2, 8, dtype=DTYPE)
    for m in range(m_count):
        rank[m, 0] = torch.tensor([TEMPLATES[m][1].index(d) for d in DIMS], dtype=DTYPE)
        rank[m, 1] = torch.arange(8, dtype=DTYPE)

    def rep(x: torch.Tensor, _k: int = 0) -> torch.Tensor:  # [n, ...] -> [n * B * M, ...]
        return x.reshape(n, 1, 1, *x.shape[1:]).expand(n, B, m_count, *x.shape[1:]).reshape(P, *x.shape[1:])

    tech = technology_of(space)
    db = 1.0 if space.double_buffer(cfg) else 0.0
    caps = [space.value(cfg, f"buf_{op}") * 1024.0 for op in "WIO"]
    inf = math.inf
    wb_nb, ab_nb = lt.bits_nb()
    wb = wb_nb.unsqueeze(-1).expand(n, B, m_count).reshape(P)
    ab = ab_nb.unsqueeze(-1).expand(n, B, m_count).reshape(P)
    full = lambda v: torch.full((P,), float(v), dtype=DTYPE)  # noqa: E731
    e_sram = float(sram_pj_per_bit(torch.tensor([sum(caps)], dtype=DTYPE), tech)[0])
    e_dram = space.base.dram.read_pj_per_bit or dram_pj_per_bit(tech)
    x = CostInputs(
        **{k: rep(getattr(lt, k), 0) for k in LayerTable.GEOMETRY},
        w_bits=wb,
        a_bits=ab,
        o_bits=ab,
        acc_bits=full(32),
        is_float=full(0),
        factor=factor,
        spatial=rep(sp, 0),
        rank=rank.view(1, 1, m_count, 2, 8).expand(n, B, m_count, 2, 8).reshape(P, 2, 8),
        db=torch.tensor([0.0, db], dtype=DTYPE).expand(P, 2),
        holds=torch.ones(P, 2, 3, dtype=DTYPE),
        spatial_level=torch.ones(P, dtype=torch.long),
        cap_op=torch.tensor([[inf] * 3, caps], dtype=DTYPE).expand(P, 2, 3),
        cap_shared=torch.full((P, 2), inf, dtype=DTYPE),
        banks=torch.tensor([1.0, space.banks], dtype=DTYPE).expand(P, 2),
        bandwidth=torch.tensor([space.base.dram.bandwidth, space.buffer_bandwidth], dtype=DTYPE).expand(P, 2),
        e_read=torch.tensor([e_dram, e_sram], dtype=DTYPE).expand(P, 2),
        e_write=torch.tensor([e_dram, e_sram], dtype=DTYPE).expand(P, 2),
        e_mac=mac_pj(wb, ab, full(32), full(0), tech)
        if space.base.mac_pj is None
        else full(space.base.mac_pj),
        rows=full(space.value(cfg, "rows")),
        cols=full(space.value(cfg, "cols")),
        pipeline_depth=full(8),
    )
    return x


def template_mapping(
    lt: LayerTable,
    space: AccelSpace,
    cfg: tuple[int, ...],
    layer_idx: int,
    bits_idx: int,
    m: int,
    name: str,
    engine: str = "main",
) -> Mapping:
    """The ir.Mapping of one template point (used for the relaxed-vs-exact comparison and as the
    fallback mapping when the exact mapper is not available)."""
    cache = lt.__dict__.setdefault("_tiles_cache", {})
    if cfg not in cache:
        cache[cfg] = template_tiles(lt, space, cfg, len(TEMPLATES))
    sp, forms, t = cache[cfg]
    tt = t[layer_idx, bits_idx, m]
    rem = torch.ceil(lt.bound[layer_idx] / sp[layer_idx])
    dram = torch.ceil(rem / tt)
    return Mapping(
        layer=name,
        engine=engine,
        spatial=dict(forms[layer_idx]),
        tiles={
            "DRAM": {d: int(dram[k]) for k, d in enumerate(DIMS) if dram[k] > 1},
            "BUF": {d: int(tt[k]) for k, d in enumerate(DIMS) if tt[k] > 1},
        },
        order={"DRAM": list(TEMPLATES[m][1]), "BUF": list(DIMS)},
        double_buffer={"BUF": space.double_buffer(cfg)},
    )


# --- resources -----------------------------------------------------------------------------------
def expected_resources(space: AccelSpace, probs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Expected DSP, BRAM18 and ASIC area of one engine under independent categorical
    probabilities; exact for one-hot probabilities. Resources are the accelerator's, as the exact
    model counts them (hw.evaluate.engine_resources): one MAC per PE at the widest precision and
    each buffer at its declared size and banks. Double buffering splits a buffer into two copies
    (a double-buffered mapping must fit both in the declared size); it never enlarges it."""
    dev = probs[0].device
    t = lambda v: torch.tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    p = dict(zip(space.names, probs))
    rows = (p["rows"] * t(space.options[0])).sum()
    cols = (p["cols"] * t(space.options[1])).sum()
    out: dict[str, torch.Tensor] = {}
    if space.base.target == "fpga":
        per = float(dsp_per_mac(t([8.0]), t([8.0]), t([0.0]), space.device_dsp_kind)[0])
        out["dsp"] = rows * cols * per
        bram = torch.zeros(())
        for op in "WIO":
            opts = space.options[space.names.index(f"buf_{op}")]
            b = bram18(t(opts) * 1024.0, t([float(space.banks)]), t([0.0]))  # [S]
            bram = bram + (p[f"buf_{op}"] * b).sum()
        out["bram18"] = bram
    else:
        tech = technology_of(space)
        sram = sum((p[f"buf_{op}"] * t(space.options[space.names.index(f"buf_{op}")])).sum() for op in "WIO")
        pes = rows * cols
        out["area_mm2"] = asic_area_um2(pes, t(8.0), t(8.0), t(0.0), sram * 1024.0, tech) / 1e6
    return out


def onehot_probs(space: AccelSpace, cfg: tuple[int, ...]) -> list[torch.Tensor]:
    return [torch.nn.functional.one_hot(torch.tensor(c), k).float() for c, k in zip(cfg, space.sizes)]
