"""The loop nest every accelerated operator is expressed in.

    O[n, g, k, p, q] += W[g, k, c, r, s] * I[n, g, c, p*Sh + r*Dh - padT, q*Sw + s*Dw - padL]

Dims: N batch, G groups, K output channels per group, C input channels per group, P/Q output
rows/cols, R/S kernel rows/cols. Dense/matmul layers have P = Q = R = S = 1; a depthwise conv has
G = channels and K = C = 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from codax.errors import ConfigError

DIMS: tuple[str, ...] = ("N", "G", "K", "C", "P", "Q", "R", "S")
OPERANDS: tuple[str, ...] = ("W", "I", "O")

# Which loop dims index each operand. R and S index the input through the sliding window.
RELEVANT: dict[str, frozenset[str]] = {
    "W": frozenset({"G", "K", "C", "R", "S"}),
    "I": frozenset({"N", "G", "C", "P", "Q", "R", "S"}),
    "O": frozenset({"N", "G", "K", "P", "Q"}),
}
REDUCTION_DIMS: frozenset[str] = frozenset({"C", "R", "S"})

ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "clip")
OPS: tuple[str, ...] = ("conv", "matmul")
RUNTIME_WEIGHT_LAYOUTS: tuple[str, ...] = ("", "GCK", "GKC")


@dataclass(frozen=True)
class Precision:
    """Operand widths in bits. `kind` says whether the kernel computes in integers or floats."""

    weight: int = 8
    act: int = 8
    acc: int = 32
    out: int = 8
    kind: str = "int"  # "int" | "float"

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float"):
            raise ConfigError(f"precision.kind must be 'int' or 'float', got {self.kind!r}")
        for name in ("weight", "act", "acc", "out"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 64:
                raise ConfigError(f"precision.{name} must be an integer number of bits in 1..64, got {v!r}")
        if self.kind == "float" and (self.weight, self.act, self.acc, self.out) != (32, 32, 32, 32):
            raise ConfigError(
                "float precision is fp32 throughout: set weight/act/acc/out to 32, or kind: int"
            )

    @staticmethod
    def float32() -> Precision:
        return Precision(32, 32, 32, 32, "float")

    def bits(self, operand: str) -> int:
        """Width of an operand as stored in DRAM (outputs at `out`, weights/inputs at their own)."""
        return {"W": self.weight, "I": self.act, "O": self.out}[operand]


@dataclass(frozen=True)
class Epilogue:
    """Work fused after the reduction, applied to each output before it is stored.

    Order: + bias -> + residual -> requantize (integer layers) -> activation.
    `residual` names the graph tensor added element-wise (same shape as the output).
    `requant_scale` is the per-output-channel (or single) real multiplier from accumulator to output
    units for integer layers; `requant_zero_point` the output zero point.
    """

    bias: bool = False
    activation: str | None = None
    clip_min: float | None = None
    clip_max: float | None = None
    residual: str | None = None
    requant: bool = False

    def __post_init__(self) -> None:
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"epilogue.activation {self.activation!r} is not supported; use one of {ACTIVATIONS} or null"
            )
        if self.activation == "clip" and (self.clip_min is None or self.clip_max is None):
            raise ConfigError("epilogue.activation 'clip' needs clip_min and clip_max")


@dataclass(frozen=True)
class Layer:
    """One accelerated operator as a 7-D loop nest with groups."""

    name: str
    N: int = 1
    G: int = 1
    K: int = 1
    C: int = 1
    P: int = 1
    Q: int = 1
    R: int = 1
    S: int = 1
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    in_hw: tuple[int, int] | None = None  # input rows/cols; derived from the nest when None
    op: str = "conv"
    precision: Precision = field(default_factory=Precision)
    epilogue: Epilogue = field(default_factory=Epilogue)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    onnx_node: str = ""
    # The weight operand is a run-time tensor (attention's K^T and V), not a constant, in the DRAM
    # layout named: "GCK" (MatMul's B, [batch][C][K]) or "GKC" ([batch][K][C]); "" for a constant.
    runtime_weight: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("layer.name must be a non-empty string")
        for d in DIMS:
            v = getattr(self, d)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"layer {self.name}: dim {d} must be a positive integer, got {v!r}")
        for fname, n in (("stride", 2), ("dilation", 2), ("pads", 4)):
            v = tuple(getattr(self, fname))
            if len(v) != n or any(not isinstance(x, int) or x < 0 for x in v):
                raise ConfigError(f"layer {self.name}: {fname} must be {n} non-negative integers, got {v!r}")
            object.__setattr__(self, fname, v)
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise ConfigError(f"layer {self.name}: stride and dilation must be >= 1")
        if self.op not in OPS:
            raise ConfigError(f"layer {self.name}: op {self.op!r} must be one of {OPS}")
        if self.op == "matmul" and (self.P, self.Q, self.R, self.S) != (1, 1, 1, 1):
            raise ConfigError(f"layer {self.name}: a matmul layer has P = Q = R = S = 1")
        if self.runtime_weight not in RUNTIME_WEIGHT_LAYOUTS:
            raise ConfigError(
                f"layer {self.name}: runtime_weight {self.runtime_weight!r} must be one of "
                f"{RUNTIME_WEIGHT_LAYOUTS} (empty: a constant weight)"
            )
        if self.runtime_weight and self.op != "matmul":
            raise ConfigError(f"layer {self.name}: only a matmul layer takes a run-time weight tensor")
        if self.in_hw is None:
            object.__setattr__(self, "in_hw", self._derived_in_hw())
        else:
            object.__setattr__(self, "in_hw", tuple(self.in_hw))
            h, w = self.in_hw
            need_h, need_w = self._window(0), self._window(1)
            pt, pl, pb, pr = self.pads
            if h + pt + pb < need_h or w + pl + pr < need_w:
                raise ConfigError(
                    f"layer {self.name}: input {h}x{w} with pads {self.pads} is smaller than the "
                    f"{need_h}x{need_w} window that P={self.P}, Q={self.Q}, R={self.R}, S={self.S} need"
                )
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    # --- shape helpers -------------------------------------------------------------------------
    def _window(self, axis: int) -> int:
        p, r = (self.P, self.R) if axis == 0 else (self.Q, self.S)
        return (p - 1) * self.stride[axis] + (r - 1) * self.dilation[axis] + 1

    def _derived_in_hw(self) -> tuple[int, int]:
        pt, pl, pb, pr = self.pads
        return (max(1, self._window(0) - pt - pb), max(1, self._window(1) - pl - pr))

    @property
    def dims(self) -> dict[str, int]:
        return {d: getattr(self, d) for d in DIMS}

    @property
    def macs(self) -> int:
        m = 1
        for d in DIMS:
            m *= getattr(self, d)
        return m

    @property
    def kind(self) -> str:
        """A human label: dense, depthwise, grouped or conv."""
        if self.op == "matmul":
            return "dense"
        if self.G > 1 and self.K == 1 and self.C == 1:
            return "depthwise"
        if self.G > 1:
            return "grouped"
        return "conv"

    def operand_size(self, operand: str) -> int:
        """Elements of an operand as stored in DRAM (input without padding)."""
        if operand == "W":
            return self.G * self.K * self.C * self.R * self.S
        if operand == "O":
            return self.N * self.G * self.K * self.P * self.Q
        h, w = self.in_hw
        return self.N * self.G * self.C * h * w

    def with_(self, **changes) -> Layer:
        return replace(self, **changes)

    def shape_key(self) -> tuple:
        """What decides a layer's cost: equal keys share a mapping."""
        return (
            tuple(self.dims.values()),
            self.stride,
            self.dilation,
            self.pads,
            self.in_hw,
            self.op,
            self.runtime_weight,
            self.precision,
            bool(self.epilogue.residual),  # the residual's DRAM reads cost beats
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stride"], d["dilation"], d["pads"] = list(self.stride), list(self.dilation), list(self.pads)
        d["in_hw"] = list(self.in_hw)
        d["inputs"], d["outputs"] = list(self.inputs), list(self.outputs)
        return d

    @staticmethod
    def from_dict(d: dict) -> Layer:
        from codax.ir.yaml_io import check_keys

        if not isinstance(d, dict):
            raise ConfigError(f"a layer must be a mapping of fields, got {type(d).__name__}")
        check_keys(d, {f for f in Layer.__dataclass_fields__}, f"layer {d.get('name', '?')}")
        d = dict(d)
        if isinstance(d.get("precision"), dict):
            check_keys(d["precision"], set(Precision.__dataclass_fields__), "precision")
            d["precision"] = Precision(**d["precision"])
        if isinstance(d.get("epilogue"), dict):
            check_keys(d["epilogue"], set(Epilogue.__dataclass_fields__), "epilogue")
            d["epilogue"] = Epilogue(**d["epilogue"])
        for k in ("stride", "dilation", "pads", "in_hw", "inputs", "outputs"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return Layer(**d)


def conv2d(
    name: str,
    *,
    n: int = 1,
    c_in: int,
    c_out: int,
    hw: tuple[int, int],
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    **kw,
) -> Layer:
    """A Layer from the usual conv2d hyper-parameters (NCHW input of size `hw`)."""
    if c_in % groups or c_out % groups:
        raise ConfigError(f"layer {name}: channels {c_in}->{c_out} are not divisible by groups={groups}")
    h, w = hw
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    p = (h + pads[0] + pads[2] - eff[0]) // stride[0] + 1
    q = (w + pads[1] + pads[3] - eff[1]) // stride[1] + 1
    if p < 1 or q < 1:
        raise ConfigError(f"layer {name}: kernel {kernel} does not fit input {hw} with pads {pads}")
    return Layer(
        name,
        N=n,
        G=groups,
        K=c_out // groups,
        C=c_in // groups,
        P=p,
        Q=q,
        R=kernel[0],
        S=kernel[1],
        stride=stride,
        dilation=dilation,
        pads=pads,
        in_hw=(h, w),
        **kw,
    )


def dense(name: str, *, n: int = 1, c_in: int, c_out: int, **kw) -> Layer:
    """A Layer for y[n, k] = sum_c x[n, c] * w[k, c]."""
    return Layer(name, N=n, K=c_out, C=c_in, op="matmul", in_hw=(1, 1), **kw)
