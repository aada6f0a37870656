"""A plain C++ reference kernel for the BYOC glue tests (not part of codax): conv2d / matmul with
constant weights read off a Relax composite, and a minimal partitioner producing such composites.
Registered by the tests that exercise the glue independently of the engine."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from codax.codegen.byoc.glue import CODEGEN, KernelSource, LayerSpec, TensorInfo, _bindings, c_array
from codax.errors import UnsupportedError


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def reference_kernel(spec: LayerSpec) -> KernelSource:
    """Reference C++ for conv2d (NCHW/OIHW, any stride/pad/dilation/groups) or matmul with a 2-D
    weight, followed by elementwise epilogues: add (per-channel bias, full-shape residual or scalar),
    relu and clip. Accumulates in float for float outputs and in the output type for integer ones."""
    func, out = spec.func, spec.output
    names: dict = {p: f"p{i}" for i, p in enumerate(func.params)}
    infos: dict = {p: spec.params[i] for i, p in enumerate(func.params)}
    for const, (cname, value) in spec.constants.items():
        names[const] = cname
        infos[const] = TensorInfo(cname, tuple(value.shape), str(value.dtype))

    def operand(expr, what: str) -> tuple[str, TensorInfo]:
        for key in names:  # relax nodes compare by identity
            if key.same_as(expr):
                return names[key], infos[key]
        raise UnsupportedError(f"{spec.composite}: the {what} must be a parameter or a constant, got {expr}")

    binds = _bindings(func)
    if not binds or not isinstance(binds[0].value, relax.Call):
        raise UnsupportedError(f"{spec.composite}: empty composite function")
    core = binds[0].value
    op = core.op.name
    data, d_info = operand(core.args[0], "data")
    weight, w_info = operand(core.args[1], "weight")
    acc = "float" if out.dtype == "float32" else ("double" if out.dtype.startswith("float") else out.ctype)
    lines = [f"{spec.prototype()} {{"]
    if op == "relax.nn.conv2d":
        a = core.attrs
        layouts = (str(a.data_layout), str(a.kernel_layout), str(a.out_layout))
        if layouts != ("NCHW", "OIHW", "NCHW"):
            raise UnsupportedError(
                f"{spec.composite}: conv2d layouts {layouts}; the reference kernel needs "
                "NCHW/OIHW/NCHW (run ConvertLayout first)"
            )
        n_, ci, h, w = d_info.shape
        o_, c, kh, kw = w_info.shape
        _, _, oh, ow = out.shape
        g = int(a.groups)
        sh, sw = _ints(a.strides)
        dh, dw = _ints(a.dilation)
        pad = _ints(a.padding)  # (top, left, bottom, right), or 2 / 1 values
        pt, pl = (pad[0], pad[0]) if len(pad) == 1 else (pad[0], pad[1])
        k = o_ // g
        channels = o_
        lines += [
            f"  for (long n = 0; n < {n_}; ++n) for (long g = 0; g < {g}; ++g)",
            f"  for (long k = 0; k < {k}; ++k) {{",
            f"    const long ch = g * {k} + k;",
            f"    for (long oh = 0; oh < {oh}; ++oh) for (long ow = 0; ow < {ow}; ++ow) {{",
            f"      {acc} v = 0;",
            f"      for (long c = 0; c < {c}; ++c) for (long r = 0; r < {kh}; ++r) {{",
            f"        const long ih = oh * {sh} + r * {dh} - {pt};",
            f"        if (ih < 0 || ih >= {h}) continue;",
            f"        for (long s = 0; s < {kw}; ++s) {{",
            f"          const long iw = ow * {sw} + s * {dw} - {pl};",
            f"          if (iw < 0 || iw >= {w}) continue;",
            f"          v += ({acc}){data}[((n * {ci} + g * {c} + c) * {h} + ih) * {w} + iw]"
            f" * ({acc}){weight}[((ch * {c} + c) * {kh} + r) * {kw} + s];",
            "        }",
            "      }",
            f"      const long idx = ((n * {o_} + ch) * {oh} + oh) * {ow} + ow;",
        ]
        closing = ["    }", "  }"]
    elif op == "relax.matmul":
        if len(w_info.shape) != 2:
            raise UnsupportedError(
                f"{spec.composite}: matmul weight of shape {w_info.shape}; the reference "
                "kernel needs a 2-D [K, N] weight"
            )
        kdim, channels = w_info.shape
        rows = d_info.size // kdim
        lines += [
            f"  for (long m = 0; m < {rows}; ++m) for (long ch = 0; ch < {channels}; ++ch) {{",
            f"    {acc} v = 0;",
            f"    for (long c = 0; c < {kdim}; ++c)"
            f" v += ({acc}){data}[m * {kdim} + c] * ({acc}){weight}[c * {channels} + ch];",
            f"    const long idx = m * {channels} + ch;",
            "    {",
        ]
        closing = ["    }", "  }"]
    else:
        raise UnsupportedError(f"{spec.composite}: the reference kernel supports conv2d and matmul, not {op}")

    prev = binds[0].var
    for b in binds[1:]:
        call = b.value
        name = call.op.name if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) else str(call)
        consumed = call.args[: 2 if name == "relax.add" else 1] if isinstance(call, relax.Call) else []
        if not any(a.same_as(prev) for a in consumed):
            raise UnsupportedError(f"{spec.composite}: epilogue {name} must consume the previous result")
        if name == "relax.add":
            other = call.args[1] if call.args[0].same_as(prev) else call.args[0]
            ref, info = operand(other, "add operand")
            aligned = (1,) * (len(out.shape) - len(info.shape)) + info.shape
            axis = 1 if op == "relax.nn.conv2d" else len(out.shape) - 1
            per_channel = len(aligned) == len(out.shape) and all(
                d == (channels if i == axis else 1) for i, d in enumerate(aligned)
            )
            if info.shape == out.shape:
                lines.append(f"      v += ({acc}){ref}[idx];")
            elif info.size == 1:
                lines.append(f"      v += ({acc}){ref}[0];")
            elif per_channel:
                lines.append(f"      v += ({acc}){ref}[ch];")
            else:
                raise UnsupportedError(
                    f"{spec.composite}: add operand of shape {info.shape} is neither a "
                    f"per-channel bias, a scalar nor of the output shape {out.shape}"
                )
        elif name == "relax.nn.relu":
            lines.append(f"      v = v > ({acc})0 ? v : ({acc})0;")
        elif name == "relax.clip":
            lo, hi = (float(x.value) for x in call.args[1:3])
            lines.append(
                f"      v = v < ({acc}){lo!r} ? ({acc}){lo!r} : (v > ({acc}){hi!r} ? ({acc}){hi!r} : v);"
            )
        else:
            raise UnsupportedError(f"{spec.composite}: the reference kernel has no epilogue for {name}")
        prev = b.var
    lines += [f"      out[idx] = ({out.ctype})v;", *closing, "  return 0;", "}"]
    consts = "".join(c_array(cname, value) for cname, value in spec.constants.values())
    return KernelSource("#include <cstdint>\n\n" + consts + "\n".join(lines) + "\n")


def partition_for_codax_minimal(mod: tvm.IRModule, bind_constants: bool = True, merge: bool = False):
    """Tiny stand-in for codax.passes' partitioner (tests only): FoldConstant, then conv2d(+bias)(+relu)
    and matmul(+bias)(+relu) with constant weights and biases become ``Codegen="codax"`` functions
    (one per layer, or grouped by ``MergeCompositeFunctions`` when ``merge``)."""
    conv = is_op("relax.nn.conv2d")(wildcard(), is_const())
    dense = is_op("relax.matmul")(wildcard(), is_const())
    patterns = []
    for kind, core in (("conv2d", conv), ("dense", dense)):
        biased = is_op("relax.add")(core, is_const())
        patterns += [
            (f"{CODEGEN}.{kind}_bias_relu", is_op("relax.nn.relu")(biased)),
            (f"{CODEGEN}.{kind}_bias", biased),
            (f"{CODEGEN}.{kind}_relu", is_op("relax.nn.relu")(core)),
            (f"{CODEGEN}.{kind}", core),
        ]
    mod = relax.transform.FoldConstant()(mod)
    mod = relax.transform.FuseOpsByPattern(
        patterns, bind_constants=bind_constants, annotate_codegen=not merge
    )(mod)
    if merge:
        mod = relax.transform.MergeCompositeFunctions()(mod)
    return mod
