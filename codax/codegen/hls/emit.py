"""HLS C++ for one layer: the mapping's loop nest (codax.codegen.nest) printed as Vitis HLS code.

Only what differs per layer is emitted: constants, element types, buffers (sized by the tiles,
partitioned along the unrolled dims, doubled for ping-pong), the loop nest with its tile
loads/stores at the planned points, the unrolled PE array and the fused epilogue. Copies, the
input-window loader, the MAC and requantization are templates in include/codax_hls.h.

Kernel ABI (every layer; unused arguments are ignored, pass null/0):
    void <fn>(const w_t *w_mem, const x_t *x_mem, y_t *y_mem, acc_t *psum_mem, const acc_t *bias_mem,
              const r_t *res_mem, const float *m_mem, float m_res, int zw, int zx, int zr, int zy,
              float lo, float hi)
`m_mem` holds the per-output-channel requantization multipliers, `m_res` the residual's, `lo`/`hi`
the output clamp (type saturation and activation folded together).
"""

from __future__ import annotations

from dataclasses import dataclass

from codax.codegen.hls.types import KernelTypes
from codax.codegen.nest import Loop, NestPlan, Transfer, plan
from codax.ir import DIMS, RELEVANT, Accelerator, Layer, Mapping

_OPI = {"W": 0, "I": 1, "O": 2}
_BUF_DIMS = {
    "W": ("G", "K", "C", "R", "S"),
    "I": ("N", "G", "C", "row", "col"),
    "O": ("N", "G", "K", "P", "Q"),
}
KERNEL_ARGS = (
    "const w_mem_t *w_mem, const x_mem_t *x_mem, y_mem_t *y_mem, acc_mem_t *psum_mem, "
    "const acc_mem_t *bias_mem, const r_mem_t *res_mem, const float *m_mem, float m_res, "
    "int zw, int zx, int zr, int zy, float lo, float hi"
)


@dataclass
class KernelSource:
    """One layer's generated code: `ident` is the C function name, `ns` its private namespace."""

    ident: str
    header: str
    source: str
    plan: NestPlan
    types: KernelTypes


def kernel_prototype(ident: str, types: KernelTypes) -> str:
    args = KERNEL_ARGS
    for t, ty in (
        ("w_mem_t", types.mem("W")),
        ("x_mem_t", types.mem("I")),
        ("y_mem_t", types.mem("Y")),
        ("acc_mem_t", types.mem("ACC")),
        ("r_mem_t", types.mem("R")),
    ):
        args = args.replace(t, ty)
    return f"void {ident}({args})"


class _Emitter:
    def __init__(self, p: NestPlan, types: KernelTypes) -> None:
        self.p, self.t = p, types
        self.lines: list[str] = []
        self.ind = 1
        self.cur = {d: "0" for d in DIMS}  # the index expression of each dim's current tile base
        self.db = {h: bool(p.mapping.double_buffer.get(p.level_names[h])) for h in range(len(p.level_names))}

    # --- helpers ----------------------------------------------------------------------------------
    def w(self, s: str = "") -> None:
        self.lines.append(("  " * self.ind + s) if s else "")

    def buf(self, X: str, h: int) -> str:
        return f"{X}{h}[pp_{X}{h}]" if self.db[h] else f"{X}{h}"

    def lvname(self, h: int) -> str:
        return self.p.level_names[h]

    # --- declarations -----------------------------------------------------------------------------
    def declare_buffers(self) -> None:
        p, t = self.p, self.t
        ctype = {"W": "w_t", "I": "x_t", "O": "acc_t"}
        unrolled = {d: k for _, d, k in p.spatial}
        for (X, h), _ in sorted(p.held.items(), key=lambda kv: (kv[0][1], _OPI[kv[0][0]])):
            shape = p.buffer_shape(X, h)
            lv = p.engine.levels[h - 1]
            where = "per-PE registers (the whole array's tiles)" if lv.per_pe else "on-chip buffer"
            dims = "".join(f"[{n}]" for n in shape)
            pp = "[2]" if self.db[h] else ""
            self.w(f"// {X} tile held at {lv.name} ({where}): {' x '.join(map(str, shape))}")
            self.w(f"static {ctype[X]} {X}{h}{pp}{dims};")
            if self.db[h]:
                self.w(f"int pp_{X}{h} = 0;  // ping-pong: loads fill one copy while compute reads the other")
                self.w(f"#pragma HLS ARRAY_PARTITION variable={X}{h} dim=1 complete")
            # partition the innermost buffers along the dims the PE array reads in parallel
            if h == p.innermost(X):
                for i, bd in enumerate(_BUF_DIMS[X]):
                    d = {"row": "P", "col": "Q"}.get(bd, bd)
                    if d in unrolled and d in RELEVANT[X] and shape[i] > 1:
                        f = min(unrolled[d], shape[i])
                        kind = "cyclic" if p.spatial_blk[d] == 1 else "block"
                        self.w(
                            f"#pragma HLS ARRAY_PARTITION variable={X}{h} {kind} factor={f} "
                            f"dim={i + 1 + (1 if self.db[h] else 0)}"
                        )
        del t

    # --- transfers --------------------------------------------------------------------------------
    def origin_extent(self, tr: Transfer) -> None:
        X, h = tr.operand, tr.h
        lay = self.p.layer
        for d in DIMS:
            if d in RELEVANT[X]:
                self.w(f"const int o{X}{h}_{d} = {self.cur[d]};")
                self.w(f"const int e{X}{h}_{d} = codax::imin({tr.tile[d]}, {d}_ - o{X}{h}_{d});")
        if X == "I":
            self.w(f"const int oI{h}_row = oI{h}_P * {lay.stride[0]} + oI{h}_R * {lay.dilation[0]};")
            self.w(f"const int oI{h}_col = oI{h}_Q * {lay.stride[1]} + oI{h}_S * {lay.dilation[1]};")

    def load(self, tr: Transfer) -> None:
        X, h, par = tr.operand, tr.h, tr.parent
        src = "DRAM" if par == 0 else self.lvname(par)
        self.w(f"// ---- {X}: {src} -> {self.lvname(h)} (reused across the loops inside this point)")
        self.origin_extent(tr)
        if self.db[h]:
            self.w(f"pp_{X}{h} ^= 1;")
        dst = self.buf(X, h)
        psrc = self.buf(X, par) if par else ""
        if X == "W":
            e = ", ".join(f"eW{h}_{d}" for d in "GKCRS")
            if par == 0:
                o = ", ".join(f"oW{h}_{d}" for d in "GKCRS")
                self.w(
                    f"CODAX_COUNT_IN({h}, codax::OP_W, codax::load_w_dram({dst}, w_mem, K_, C_, R_, S_, "
                    f"{o}, {e}));"
                )
            else:
                o = ", ".join(f"oW{h}_{d} - oW{par}_{d}" for d in "GKCRS")
                self.w(f"CODAX_COUNT_IN({h}, codax::OP_W, codax::copy_in({dst}, {psrc}, {o}, {e}));")
        elif X == "I":
            e = ", ".join(f"eI{h}_{d}" for d in "NGCPRQS")
            geo = "SH, SW, DH, DW"
            if par == 0:
                o = ", ".join(f"oI{h}_{d}" for d in ("N", "G", "C", "row", "col"))
                self.w(
                    f"CODAX_COUNT_IN({h}, codax::OP_I, codax::load_i_dram({dst}, x_mem, G_, C_, H_, W_, {o}, "
                    f"{e}, {geo}, PAD_T, PAD_L, zx));"
                )
            else:
                o = ", ".join(f"oI{h}_{d} - oI{par}_{d}" for d in ("N", "G", "C", "row", "col"))
                self.w(f"CODAX_COUNT_IN({h}, codax::OP_I, codax::copy_i({dst}, {psrc}, {o}, {e}, {geo}));")
        else:
            e = ", ".join(f"eO{h}_{d}" for d in "NGKPQ")
            first = " && ".join(f"i{lp.index} == 0" for lp in self.p.first_visit_loops(tr)) or "true"
            self.w(f"const bool firstO{h} = {first};  // first visit: every enclosing reduction loop at 0")
            self.w(f"if (firstO{h}) {{")
            self.w(f"  codax::zero_o({dst}, {e});")
            self.w("} else {  // partial sums come back (read-modify-write at accumulator width)")
            if par == 0:
                o = ", ".join(f"oO{h}_{d}" for d in "NGKPQ")
                self.w(
                    f"  CODAX_COUNT_IN({h}, codax::OP_O, codax::load_psum_dram({dst}, psum_mem, G_, K_, P_, "
                    f"Q_, {o}, {e}));"
                )
            else:
                o = ", ".join(f"oO{h}_{d} - oO{par}_{d}" for d in "NGKPQ")
                self.w(f"  CODAX_COUNT_IN({h}, codax::OP_O, codax::copy_in({dst}, {psrc}, {o}, {e}));")
            self.w("}")

    def store(self, tr: Transfer) -> None:
        h, par = tr.h, tr.parent
        src = self.buf("O", h)
        e = ", ".join(f"eO{h}_{d}" for d in "NGKPQ")
        dst = "DRAM" if par == 0 else self.lvname(par)
        self.w(f"// ---- O: {self.lvname(h)} -> {dst}")
        if par:
            o = ", ".join(f"oO{h}_{d} - oO{par}_{d}" for d in "NGKPQ")
            self.w(
                f"CODAX_COUNT_OUT({h}, codax::OP_O, codax::copy_out({self.buf('O', par)}, {src}, {o}, {e}));"
            )
            return
        loops = self.p.first_visit_loops(tr)
        last = " && ".join(f"i{lp.index} == n{lp.index} - 1" for lp in loops) or "true"
        o = ", ".join(f"oO{h}_{d}" for d in "NGKPQ")
        self.w(f"const bool lastO{h} = {last};  // last visit: every enclosing reduction loop at its end")
        self.w(f"if (!lastO{h}) {{")
        self.w(
            f"  CODAX_COUNT_OUT({h}, codax::OP_O, codax::store_psum_dram(psum_mem, {src}, G_, K_, P_, Q_, "
            f"{o}, {e}));"
        )
        self.w("} else {")
        self.ind += 1
        self.final_store(h, src)
        self.ind -= 1
        self.w("}")

    def final_store(self, h: int, src: str) -> None:
        ep = self.p.layer.epilogue
        t = self.t
        self.w(f"// final outputs: fused epilogue ({self.epilogue_doc()}), then store at output width")
        self.w("int n_out = 0;")
        self.w("EPILOGUE:")
        self.w(f"for (int a = 0; a < eO{h}_N; ++a)")
        self.w(f"  for (int b = 0; b < eO{h}_G; ++b)")
        self.w(f"    for (int c = 0; c < eO{h}_K; ++c)")
        self.w(f"      for (int d = 0; d < eO{h}_P; ++d)")
        self.w(f"        for (int e = 0; e < eO{h}_Q; ++e) {{")
        self.ind += 5
        self.w("#pragma HLS PIPELINE II=1")
        self.w(f"const int ch = (oO{h}_G + b) * K_ + oO{h}_K + c;")
        self.w(
            f"const long addr = codax::o_addr(G_, K_, P_, Q_, oO{h}_N + a, oO{h}_G + b, oO{h}_K + c, "
            f"oO{h}_P + d, oO{h}_Q + e);"
        )
        if t.is_float:
            self.w(f"float v = (float){src}[a][b][c][d][e];")
            if ep.bias:
                self.w("v = v + bias_mem[ch];")
            if ep.residual:
                self.w("v = v + res_mem[addr];")
            self.w("y_mem[addr] = codax::clampf(v, lo, hi);")
        else:
            self.w(f"acc_t acc = {src}[a][b][c][d][e];")
            if ep.bias:
                self.w("acc = acc + (acc_t)bias_mem[ch];")
            res = "(int)res_mem[addr]" if ep.residual else "0"
            if ep.requant:
                self.w(
                    f"y_mem[addr] = (y_mem_t)codax::requant((int32_t)acc.to_int(), m_mem[ch], "
                    f"{'true' if ep.residual else 'false'}, {res}, zr, m_res, zy, (int)lo, (int)hi);"
                )
            else:
                extra = " + (long)(res_mem[addr] - zr)" if ep.residual else ""
                self.w(
                    f"y_mem[addr] = (y_mem_t)codax::saturate((long)acc.to_int(){extra}, (int)lo, (int)hi);"
                )
        self.w("++n_out;")
        self.ind -= 5
        self.w("        }")
        self.w(f"CODAX_COUNT_OUT({h}, codax::OP_O, n_out);")

    def epilogue_doc(self) -> str:
        ep = self.p.layer.epilogue
        parts = (["bias"] if ep.bias else []) + (["residual"] if ep.residual else [])
        if self.t.kind == "int":
            parts.append("requantize" if ep.requant else "saturate")
        parts.append(f"clamp[{ep.activation or 'type range'}]")
        return " -> ".join(parts)

    # --- the nest ---------------------------------------------------------------------------------
    def slot(self, pos: int) -> None:
        """Everything at the point right after loop `pos` opens (pos = -1: the function body)."""
        loads = self.p.loads_at(pos)
        for tr in loads:
            self.load(tr)
        if pos + 1 < len(self.p.loops):
            self.loop(self.p.loops[pos + 1])
        else:
            self.compute()
        for tr in self.p.stores_at(pos):
            self.store(tr)

    def loop(self, lp: Loop) -> None:
        j, d = lp.index, lp.dim
        base = self.cur[d]
        lvname = self.p.level_names[lp.level]
        kind = "spatial-level" if lp.level <= self.p.spatial_level else "per-PE"
        self.w(
            f"const int n{j} = codax::trips({lp.factor}, {d}_ - {base}, {lp.blk});  // skip tiles past {d}"
        )
        self.w(f"L{j}_{lvname}_{d}:")
        self.w(
            f"for (int i{j} = 0; i{j} < n{j}; ++i{j}) {{  // {lvname} loop over {d} ({kind}), step {lp.blk}"
        )
        self.ind += 1
        self.w(f"#pragma HLS LOOP_TRIPCOUNT max={lp.factor}")
        last = j == len(self.p.loops) - 1
        if last and not self.p.loads_at(j) and lp.level == len(self.p.level_names) - 1:
            self.w("#pragma HLS PIPELINE II=1")
        self.w(f"const int b{j} = {base} + i{j} * {lp.blk};")
        self.cur[d] = f"b{j}"
        self.slot(j)
        self.cur[d] = base
        self.ind -= 1
        self.w("}")

    def compute(self) -> None:
        p, t = self.p, self.t
        lay = p.layer
        self.w("// ---- PE array: one step of every PE (spatial loops fully unrolled)")
        opened = 0
        for axis, d, k in p.spatial:
            self.w(f"PE_{axis.upper()}:")
            self.w(f"for (int sp_{axis} = 0; sp_{axis} < {k}; ++sp_{axis}) {{  // {d} across {axis}")
            self.ind += 1
            self.w("#pragma HLS UNROLL")
            opened += 1
        sp_terms: dict[str, str] = {}
        for d in DIMS:
            axes = [(a, k) for a, dd, k in p.spatial if dd == d]
            if not axes:
                continue
            expr = f"sp_{axes[0][0]}"
            for a, k in axes[1:]:
                expr = f"({expr} * {k} + sp_{a})"
            sp_terms[d] = f"{expr} * {p.spatial_blk[d]}"
        for d in DIMS:
            extra = f" + {sp_terms[d]}" if d in sp_terms else ""
            self.w(f"const int {d.lower()}_ = {self.cur[d]}{extra};")
        if sp_terms:
            cond = " || ".join(f"{d.lower()}_ >= {d}_" for d in sp_terms)
            self.w(f"if (!({cond})) {{  // idle PE on a clipped tile")
        else:
            self.w("{")
        self.ind += 1
        hw, hi, ho = p.innermost("W"), p.innermost("I"), p.innermost("O")
        widx = "".join(f"[{d.lower()}_ - oW{hw}_{d}]" for d in "GKCRS")
        iidx = (
            f"[n_ - oI{hi}_N][g_ - oI{hi}_G][c_ - oI{hi}_C]"
            f"[p_ * SH + r_ * DH - oI{hi}_row][q_ * SW + s_ * DW - oI{hi}_col]"
        )
        oidx = "".join(f"[{d.lower()}_ - oO{ho}_{d}]" for d in "NGKPQ")
        if t.is_float:
            self.w(f"{self.buf('O', ho)}{oidx} += {self.buf('W', hw)}{widx} * {self.buf('I', hi)}{iidx};")
        else:
            self.w(
                f"{self.buf('O', ho)}{oidx} += codax::mac_term<{t.acc_bits}>({self.buf('W', hw)}{widx}, "
                f"{self.buf('I', hi)}{iidx}, zw, zx);"
            )
        self.w("CODAX_COUNT_MAC();")
        self.ind -= 1
        self.w("}")
        del lay
        for _ in range(opened):
            self.ind -= 1
            self.w("}")


def emit_kernel(
    layer: Layer, accel: Accelerator, mapping: Mapping, ident: str, types: KernelTypes | None = None
) -> KernelSource:
    """The C++ header and source of one layer's kernel, function name `ident` (a C identifier)."""
    types = types or KernelTypes.for_layer(layer)
    p = plan(layer, accel, mapping)
    e = _Emitter(p, types)
    lay = layer
    h, w = lay.in_hw
    pt, pl, _, _ = lay.pads
    proto = kernel_prototype(ident, types)
    head = [
        f"// {ident}.h -- generated by codax: layer {_comment(layer.name)}",
        "#pragma once",
        "#include <stdint.h>",
        f"{proto};",
        "",
    ]
    src = [
        f"// {ident}.cpp -- generated by codax. Do not edit: regenerate from the mapping.",
        f"// layer   : {_comment(layer.name)} ({layer.kind}, onnx node {_comment(layer.onnx_node) or '-'})",
        f"// shape   : N={lay.N} G={lay.G} K={lay.K} C={lay.C} P={lay.P} Q={lay.Q} R={lay.R} S={lay.S} "
        f"stride={lay.stride} dilation={lay.dilation} pads={lay.pads} input={h}x{w}",
        f"// engine  : {p.engine.name}, levels {' > '.join(p.level_names)} (spatial fan-out below "
        f"{p.level_names[p.spatial_level]})",
        f"// mapping : {_comment(mapping.summary())}",
        f"// epilogue: {e.epilogue_doc()}",
        "//",
        "// Loop nest (outermost first; one line per loop with trip count > 1):",
    ]
    for lp in p.loops:
        src.append(f"//   {p.level_names[lp.level]:>6} {lp.dim} x{lp.factor} (step {lp.blk})")
    for axis, d, k in p.spatial:
        src.append(f"//   {'PE':>6} {d} x{k} across {axis} (unrolled)")
    src.append("// Transfers (operand: parent -> level, placed after loop #):")
    for tr in sorted(p.transfers, key=lambda t: (t.h, _OPI[t.operand])):
        par = p.level_names[tr.parent]
        src.append(f"//   {tr.operand}: {par} -> {p.level_names[tr.h]} after loop {tr.pos}")
    src += [
        f'#include "{ident}.h"',
        '#include "codax_hls.h"',
        "",
        f"namespace {ident}_ns {{",
        f"typedef {types.chip('W')} w_t;",
        f"typedef {types.chip('I')} x_t;",
        f"typedef {types.chip('ACC')} acc_t;",
        f"typedef {types.mem('Y')} y_mem_t;",
        f"static const int N_ = {lay.N}, G_ = {lay.G}, K_ = {lay.K}, C_ = {lay.C};",
        f"static const int P_ = {lay.P}, Q_ = {lay.Q}, R_ = {lay.R}, S_ = {lay.S};",
        f"static const int H_ = {h}, W_ = {w}, PAD_T = {pt}, PAD_L = {pl};",
        f"static const int SH = {lay.stride[0]}, SW = {lay.stride[1]}, DH = {lay.dilation[0]}, "
        f"DW = {lay.dilation[1]};",
        "}  // namespace",
        "",
        f"{proto} {{",
        f"  using namespace {ident}_ns;",
    ]
    e.declare_buffers()
    e.w("")
    e.slot(-1)
    src += e.lines
    src += ["}", ""]
    return KernelSource(ident, "\n".join(head), "\n".join(src), p, types)


def _comment(s: str) -> str:
    """Text safe inside a // comment (no newlines or trigraph/line-splice surprises)."""
    return "".join(ch if ch.isprintable() and ch != "\\" else "?" for ch in str(s))[:120]
