"""codax's fusion patterns for `relax.transform.FuseOpsByPattern`, longest (highest priority) first.

Float layers:   core [+ bias] [+ residual] [relu | clip]
Integer layers: astype(xq) [- zx] -> core(int32) [+ bias] -> * scale [relu | clip] -> quantize
where core is conv2d (regular, depthwise, grouped, strided, dilated, padded: all one op) or matmul.
A matmul of two run-time tensors (attention's Q K^T and A V; the `_rt` patterns) has no bias or residual:
float ``matmul(x, w) [act]``, integer ``matmul(astype(xq) [- zx], astype(wq) [- zw]) -> * scale [act]
-> quantize``; its `wt` annotation is the second operand.
A bias is an add of a per-channel constant, a residual an add of a run-time activation of the output's
shape; the `check` enforces the difference so a bias pattern never swallows a residual add.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.relax.dpl import DFPattern, is_const, is_op, is_var, wildcard

ACTS = ("relu", "clip", None)


@dataclass
class CodaxPattern:
    name: str
    pattern: DFPattern
    annotations: dict[str, DFPattern]
    integer: bool

    @property
    def runtime_weight(self) -> bool:
        return "wt" in self.annotations


def _act(y: DFPattern, act: str | None, ann: dict) -> DFPattern:
    if act == "relu":
        y = is_op("relax.nn.relu")(y)
    elif act == "clip":
        y = is_op("relax.clip")(y, wildcard(), wildcard())
    if act:
        ann["act"] = y
    return y


def _weight(core: str, integer: bool) -> DFPattern:
    if integer:
        return is_const()
    w = is_const() | is_var()
    return w | is_op("relax.permute_dims")(is_var()) if core == "matmul" else w


def _name(core: str, bias: bool, res: bool, act: str | None, integer: bool, swapped: bool = False) -> str:
    parts = [("q" if integer else "") + ("conv2d" if core == "conv" else "matmul")]
    parts += ["bias"] * bias + ["res"] * res + ([act] if act else []) + ["requant"] * integer
    return "codax." + "_".join(parts) + ("_r" if swapped else "")


def float_pattern(core: str, bias: bool, res: bool, act: str | None, swapped: bool) -> CodaxPattern:
    data, w = wildcard(), _weight(core, False)
    c = is_op("relax.nn.conv2d" if core == "conv" else "relax.matmul")(data, w)
    ann: dict[str, DFPattern] = {"core": c, "data": data, "weight": w}
    y = c
    if bias:
        b = is_const()
        y = is_op("relax.add")(y, b)
        ann["bias"] = b
    if res:
        r = wildcard()
        y = is_op("relax.add")(r, y) if swapped else is_op("relax.add")(y, r)
        ann["residual"], ann["res_add"] = r, y
    y = _act(y, act, ann)
    ann["root"] = y
    return CodaxPattern(_name(core, bias, res, act, False, swapped), y, ann, False)


def int_pattern(core: str, bias: bool, act: str | None) -> CodaxPattern:
    xq = wildcard()
    xi = is_op("relax.astype")(xq)
    data = is_op("relax.subtract")(xi, is_const()) | xi
    w = _weight(core, True)
    c = is_op("relax.nn.conv2d" if core == "conv" else "relax.matmul")(data, w)
    ann: dict[str, DFPattern] = {"core": c, "xq": xq, "weight": w}
    y = c
    if bias:
        b = is_const()
        y = is_op("relax.add")(y, b)
        ann["bias"] = b
    y = is_op("relax.multiply")(is_op("relax.astype")(y), is_const())
    y = _act(y, act, ann)
    y = is_op("relax.quantize")(y, is_const(), is_const())
    ann["root"] = y
    return CodaxPattern(_name(core, bias, False, act, True), y, ann, True)


def runtime_pattern(act: str | None, integer: bool) -> CodaxPattern:
    """A matmul whose second operand `wt` is a run-time tensor (the partition check tells it from a
    constant weight)."""
    if integer:
        xq, wq = wildcard(), wildcard()
        xi, wi = is_op("relax.astype")(xq), is_op("relax.astype")(wq)
        data = is_op("relax.subtract")(xi, is_const()) | xi
        wt = is_op("relax.subtract")(wi, is_const()) | wi
        c = is_op("relax.matmul")(data, wt)
        ann: dict[str, DFPattern] = {"core": c, "xq": xq, "wq": wq, "wt": wq, "weight": wt}
        y = is_op("relax.multiply")(is_op("relax.astype")(c), is_const())
        y = _act(y, act, ann)
        y = is_op("relax.quantize")(y, is_const(), is_const())
    else:
        data, wt = wildcard(), wildcard()
        c = is_op("relax.matmul")(data, wt)
        ann = {"core": c, "data": data, "wt": wt, "weight": wt}
        y = _act(c, act, ann)
    ann["root"] = y
    name = "codax." + "_".join([("q" if integer else "") + "matmul_rt"] + ([act] if act else []))
    return CodaxPattern(name + "_requant" * integer, y, ann, integer)


def codax_patterns() -> list[CodaxPattern]:
    """All patterns, integer first, then longer before shorter so the largest legal fusion wins."""
    out = [int_pattern(c, b, a) for c in ("conv", "matmul") for b in (True, False) for a in ACTS]
    for core in ("conv", "matmul"):
        for bias in (True, False):
            for res in (True, False):
                for act in ACTS:
                    out.append(float_pattern(core, bias, res, act, False))
                    if res:
                        out.append(float_pattern(core, bias, res, act, True))
    out += [runtime_pattern(a, integer) for integer in (True, False) for a in ACTS]
    out.sort(key=lambda p: (not p.integer, -len(p.annotations)))
    return out
