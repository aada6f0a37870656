"""The supernet (mixed ops, mixed bitwidths) and the derived plain network.

Fake quantisation is symmetric per-tensor with a straight-through estimator. A layer's weights and
input activations are mixed over bitwidths by probabilities: soft Gumbel weights when the network
weights are trained, a sampled pair's gates when the bit logits are trained (Auto-NBA's
heterogeneous sampling, sampling.py: one conv per layer either way, so memory stays constant).

Module paths are the layer names used everywhere downstream: `stem`, `b<i>.expand`, `b<i>.dw`,
`b<i>.project`, `head`, `fc` (each issues exactly one conv/linear call, so the ONNX node of that call
gets the module's scope).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from codax.search.space import NetworkSpace, OpSpec, Unit


def fake_quant(x: torch.Tensor, bits: int, amax: torch.Tensor | None = None) -> torch.Tensor:
    """Round half to even onto the `bits`-bit grid [-2^(b-1), 2^(b-1) - 1] x scale, scale = amax /
    (2^(b-1) - 1) (zero point 0): ONNX QuantizeLinear's arithmetic, so a QDQ export with the same
    scales computes the same values (docs/bitwidths.md). amax defaults to max |x|, which never reaches
    the lowest grid point; a static amax saturates there as QuantizeLinear does. Gradients pass
    straight through."""
    qmax = 2.0 ** (bits - 1) - 1.0
    if amax is None:
        amax = x.detach().abs().amax()
    scale = amax.clamp(min=1e-8) / qmax
    q = torch.clamp(torch.round(x.detach() / scale), -qmax - 1.0, qmax) * scale
    return q + (x - x.detach())  # the value is q exactly (x + (q - x) would round), d/dx = 1


def active(probs: torch.Tensor, run: torch.Tensor | None = None) -> list[int]:
    """Indices of the paths a forward runs: the non-zero entries of a probability vector, or the
    entries of `run` (a bool mask) when given.

    A one-hot sample runs one path and a sampled pair two (sampling.pair_gates: the second gate is
    0 in value but its output gives the gate's gradient), so memory does not grow with the number
    of candidates. Soft probabilities are never exactly zero: every path runs (FBNet's mixing). One
    host sync per call, not one per entry."""
    if run is not None:
        return torch.nonzero(run).flatten().tolist()
    return torch.nonzero(probs.detach()).flatten().tolist()


def _quant_error(x: torch.Tensor, bits: int, amax: torch.Tensor) -> torch.Tensor:
    """Q_b(x) - x in one new buffer, the value fake_quant(x, bits, amax) - x gives bit for bit
    (the same operations in the same order, in place). For use where autograd does not record
    (inside _BitMix): fake_quant's straight-through term and its temporaries would be waste there,
    and they were most of a soft-mixed forward's time and of its short-lived allocations, which a
    recomputed forward (`recompute`) pays twice."""
    qmax = 2.0 ** (bits - 1) - 1.0
    scale = amax.clamp(min=1e-8) / qmax
    return torch.div(x, scale).round_().clamp_(-qmax - 1.0, qmax).mul_(scale).sub_(x)


class _BitMix(torch.autograd.Function):
    """x + sum_b p_b (Q_b(x) - x) over the non-zero p_b, straight-through in x. The gradient of
    every p_b (zero-valued ones included: a sampled pair's second width) is <g, Q_b(x) - x>,
    recomputed in backward from x, so the architecture step keeps one tensor per layer input
    whatever the number of widths."""

    @staticmethod
    def forward(ctx, x, probs, choices):
        amax = x.abs().amax()
        delta = None
        for i in active(probs):
            term = _quant_error(x, choices[i], amax).mul_(probs[i])
            delta = term if delta is None else delta.add_(term)
        ctx.choices = choices
        ctx.save_for_backward(x, amax)
        return x.clone() if delta is None else delta.add_(x)

    @staticmethod
    def backward(ctx, g):
        x, amax = ctx.saved_tensors
        gp = None
        if ctx.needs_input_grad[1]:
            gp = torch.stack([_quant_error(x, b, amax).mul_(g).sum() for b in ctx.choices])
        return g, gp, None


def mix_quant(x: torch.Tensor, probs: torch.Tensor | None, choices: list[int]) -> torch.Tensor:
    """sum_b probs[b] * Q_b(x) = x + sum_b probs[b] * (Q_b(x) - x) (straight-through); a one-hot
    probs (hard sample) quantises at one width only (see `active`). Gradients reach probs through
    the mix, for every width (`_BitMix`)."""
    if probs is None:
        return x
    # sum_b p_b = 1 for softmax/one-hot probs, so the value is the mix and d/dx is the identity
    return _BitMix.apply(x, probs, list(choices))


class ConvBNAct(nn.Module):
    """conv (+ BN) (+ ReLU) with optional fake-quantised weights and inputs. `fuse()` folds BN into
    the conv for export, so one ONNX Conv node stands for one codax layer."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.stride, self.pad, self.groups, self.act = stride, k // 2, groups, act
        self.weight = nn.Parameter(torch.empty(cout, cin // groups, k, k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(cout)
        self.bias: nn.Parameter | None = None

    def forward(self, x: torch.Tensor, qw=None, qa=None, choices=None, xq=None) -> torch.Tensor:
        """xq: the input already fake-quantised by the caller (shared by all ops of a unit)."""
        w = self.weight
        if choices is not None:
            w = mix_quant(w, qw, choices)
            x = xq if xq is not None else mix_quant(x, qa, choices)
        y = F.conv2d(x, w, self.bias, self.stride, self.pad, 1, self.groups)
        if self.bn is not None:
            y = self.bn(y)
        return F.relu(y) if self.act else y

    @torch.no_grad()
    def fuse(self) -> None:
        if self.bn is None:
            return
        bn = self.bn
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.weight.mul_(s.view(-1, 1, 1, 1))
        self.bias = nn.Parameter(bn.bias - bn.running_mean * s)
        self.bn = None


class QLinear(nn.Linear):
    def forward(self, x: torch.Tensor, qw=None, qa=None, choices=None, xq=None) -> torch.Tensor:
        w = self.weight
        if choices is not None:
            x, w = mix_quant(x, qa, choices), mix_quant(w, qw, choices)
        return F.linear(x, w, self.bias)


class IRBlock(nn.Module):
    """Inverted residual: 1x1 expand (when e > 1) -> kxk depthwise -> 1x1 project (+ residual)."""

    def __init__(self, unit: Unit, op: OpSpec):
        super().__init__()
        mid = unit.c_in * op.expansion
        self.expand = ConvBNAct(unit.c_in, mid, 1) if op.expansion > 1 else None
        self.dw = ConvBNAct(mid, mid, op.kernel, unit.stride, groups=mid)
        self.project = ConvBNAct(mid, unit.c_out, 1, act=False)
        self.residual = unit.stride == 1 and unit.c_in == unit.c_out

    def forward(self, x, qw=None, qa=None, choices=None, xq=None):
        y = x
        if self.expand is not None:
            y, xq = self.expand(y, qw, qa, choices, xq), None
        y = self.project(self.dw(y, qw, qa, choices, xq), qw, qa, choices)
        return x + y if self.residual else y


class _Superkernel(nn.Module):
    """The shared tensors of a group of inverted-residual ops: 1x1 expand (when the group expands),
    the largest depthwise kernel, 1x1 project, over the group's widest expanded channels."""

    def __init__(self, unit: Unit, ops: list[OpSpec]):
        super().__init__()
        e_max = max(op.expansion for op in ops)
        self.k_max = max(op.kernel for op in ops)
        mid = unit.c_in * e_max
        self.expand = nn.Parameter(torch.empty(mid, unit.c_in, 1, 1)) if e_max > 1 else None
        self.dw = nn.Parameter(torch.empty(mid, 1, self.k_max, self.k_max))
        self.project = nn.Parameter(torch.empty(unit.c_out, mid, 1, 1))
        for w in (self.expand, self.dw, self.project):
            if w is not None:
                nn.init.kaiming_normal_(w, mode="fan_out")


def _group(op: OpSpec) -> str:
    return "expanded" if op.expansion > 1 else "plain"


class SharedIR(nn.Module):
    """All inverted-residual ops of a unit over shared weights (a superkernel, as in Single-Path
    NAS / FBNetV2): op (k, e) uses the first c_in * e expanded channels and the centre k x k of the
    largest depthwise kernel of its group; each op keeps its own batch norms.

    Why share: with private weights per op, the soft mixture trains each op as one share of a sum,
    so the argmax op alone is a poor network and the op gradients favour whichever op has the most
    private parameters. Sharing makes the ops' outputs comparable, so the architecture gradient
    between two ops measures what the extra channels or the kernel ring actually add.

    Why two groups: an op that expands (e > 1) runs its depthwise kernel on the expand layer's
    features, an op that does not (e = 1) runs it on the block's input itself. One tensor serving
    both would be pulled towards two different inputs, and towards whichever op the search samples
    more: the cheap unexpanded op, once the hardware cost favours it, trains the shared kernel for
    itself and makes the expanded ops look worse than they are. On digits, with one superkernel,
    the benchmark's co-search (seed 0) kept the first block at an e1 op in every run, and the
    supernet read the e3 op there 3.7 points lower on `val` (0.885 against 0.922). With one
    superkernel per group, searches at the same target (100.2k FPS) ended with e3 there for seeds 0,
    1 and 2. So the expanded ops share one superkernel and the unexpanded ops another."""

    def __init__(self, unit: Unit, ops: list[OpSpec]):
        super().__init__()
        self.unit, self.ops = unit, [op for op in ops if op.kind == "ir"]
        self.groups = nn.ModuleDict()
        for g in ("expanded", "plain"):
            members = [op for op in self.ops if _group(op) == g]
            if members:
                self.groups[g] = _Superkernel(unit, members)
        self.bns = nn.ModuleDict()
        for op in self.ops:
            m = unit.c_in * op.expansion
            widths = ([m] if op.expansion > 1 else []) + [m, unit.c_out]
            self.bns[op.label] = nn.ModuleList(nn.BatchNorm2d(c) for c in widths)
        self.residual = unit.stride == 1 and unit.c_in == unit.c_out

    def weights(self, op: OpSpec) -> list[tuple[torch.Tensor, int, int, int]]:
        """(weight, stride, padding, groups) of the op's layers, sliced from its group's tensors."""
        sk = self.groups[_group(op)]
        m, k = self.unit.c_in * op.expansion, op.kernel
        off = (sk.k_max - k) // 2
        out = [(sk.expand[:m], 1, 0, 1)] if op.expansion > 1 else []
        out.append((sk.dw[:m, :, off : off + k, off : off + k], self.unit.stride, k // 2, m))
        out.append((sk.project[:, :m], 1, 0, 1))
        return out

    def forward_op(self, op: OpSpec, x, qw=None, qa=None, choices=None, xq=None) -> torch.Tensor:
        layers, bns = self.weights(op), self.bns[op.label]
        y = x
        for i, ((w, stride, pad, groups), bn) in enumerate(zip(layers, bns)):
            if choices is not None:
                w = mix_quant(w, qw, choices)
                y = xq if (i == 0 and xq is not None) else mix_quant(y, qa, choices)
            y = bn(F.conv2d(y, w, None, stride, pad, 1, groups))
            if i < len(layers) - 1:
                y = F.relu(y)
        return x + y if self.residual else y

    @torch.no_grad()
    def extract(self, op: OpSpec) -> IRBlock:
        """The op as a standalone IRBlock with the shared weights and its own batch norms."""
        blk = IRBlock(self.unit, op)
        convs = [c for c in (blk.expand, blk.dw, blk.project) if c is not None]
        for conv, (w, *_), bn in zip(convs, self.weights(op), self.bns[op.label]):
            conv.weight.copy_(w)
            conv.bn.load_state_dict(bn.state_dict())
        return blk


class _SharedOp(nn.Module):
    """One op of a SharedIR, callable like an op module (holds no parameters of its own)."""

    def __init__(self, shared: SharedIR, op: OpSpec):
        super().__init__()
        self.op = op
        self.__dict__["shared"] = shared  # not a submodule: the unit owns the shared weights once

    def forward(self, x, qw=None, qa=None, choices=None, xq=None):
        return self.shared.forward_op(self.op, x, qw, qa, choices, xq)


def _op_module(unit: Unit, op: OpSpec) -> nn.Module:
    if op.kind == "ir":
        return IRBlock(unit, op)
    if op.kind == "skip":
        return nn.Identity()
    if op.kind == "conv":
        return ConvBNAct(unit.c_in, unit.c_out, unit.kernel, unit.stride)
    return QLinear(unit.c_in, unit.c_out)


def _call(m: nn.Module, x, qw, qa, choices, xq=None):
    return x if isinstance(m, nn.Identity) else m(x, qw, qa, choices, xq)


# `recompute: auto` checkpoints a forward whose activations kept for backward are estimated above
# this: the 22-block cifar22 supernet at batch 64 (estimated 1.3 GB in its weight step, 1.9 GB in
# its architecture step) recomputes, the default digits search (8x8 inputs, 6 / 13 MB) does not
RECOMPUTE_AUTO_BYTES = 512 * 2**20
# tensors of a layer's output size autograd keeps per layer (the layer input for _BitMix and, once
# quantised, for the conv; the conv output for batch norm; the activation output), fewer where
# they coincide: 3 puts the estimate within 15% of the bytes the saved-tensor hooks count on
# cifar22 at batch 64 (1.20 GB weight step, 1.68 GB architecture step)
_SAVED_PER_LAYER = 3


def _op_activations(unit: Unit, op: OpSpec) -> int:
    """Elements per image of the layer outputs of `op` in `unit` (the layer inputs are the previous
    outputs): the activation memory the op keeps for backward is about _SAVED_PER_LAYER times this."""
    h, ho = unit.hw_in, unit.hw_out
    if op.kind == "skip":
        return 0
    if op.kind == "fc":
        return unit.c_in + unit.c_out
    if op.kind == "conv":
        return unit.c_in * h * h + unit.c_out * ho * ho
    m = unit.c_in * op.expansion
    expand = m * h * h if op.expansion > 1 else 0
    return unit.c_in * h * h + expand + m * ho * ho + unit.c_out * ho * ho


class Supernet(nn.Module):
    """All candidate ops of every unit; `forward` mixes them with per-unit op weights, running only
    the ops whose weight is non-zero (one per unit for a hard sample, see `active`)."""

    def __init__(
        self,
        space: NetworkSpace,
        bit_choices: list[int],
        share_weights: bool = True,
        recompute: bool | str = "auto",
    ):
        """`recompute` (`search.recompute`): True keeps only each unit's input for backward and runs
        the unit again there (activation checkpointing): memory of one unit's activations instead of
        the network's, for one more forward per step; "auto" does so in a forward whose estimated
        activation memory (`activation_bytes`) exceeds RECOMPUTE_AUTO_BYTES."""
        super().__init__()
        if not (isinstance(recompute, bool) or recompute == "auto"):
            raise ValueError(f"search.recompute must be true, false or 'auto', got {recompute!r}")
        self.space, self.choices, self.recompute = space, list(bit_choices), recompute
        # [U, max_ops] elements per image of each op's layer outputs (0 past a unit's ops)
        self.op_activations = torch.zeros(len(space.units), max(len(u.ops) for u in space.units))
        for i, u in enumerate(space.units):
            for o, op in enumerate(u.ops):
                self.op_activations[i, o] = _op_activations(u, op)
        self.shared = nn.ModuleDict()  # unit name -> SharedIR (share_weights)
        units = []
        for u in space.units:
            if share_weights and sum(op.kind == "ir" for op in u.ops) > 1:
                sh = self.shared[u.name] = SharedIR(u, u.ops)
                units.append(
                    nn.ModuleList(_SharedOp(sh, op) if op.kind == "ir" else nn.Identity() for op in u.ops)
                )
            else:
                units.append(nn.ModuleList(_op_module(u, op) for op in u.ops))
        self.units = nn.ModuleList(units)

    def op_module(self, u: int, o: int) -> nn.Module:
        """Unit u's op o as a standalone module with the supernet's weights (for inspection/tests)."""
        m = self.units[u][o]
        return m.shared.extract(m.op) if isinstance(m, _SharedOp) else m

    def forward(
        self,
        x: torch.Tensor,
        op_w: torch.Tensor,
        bit_w: torch.Tensor | None,
        bit_a: torch.Tensor | None,
        units: range | None = None,
        run: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """op_w [U, max_ops]; bit_w / bit_a [U, n_bits] (None: float). `units`: run only these
        consecutive units, `x` being the first one's input (a cached prefix's output reused).
        `run` [U, max_ops] bool: the ops to run (default: the non-zero entries of op_w)."""
        units = range(len(self.units)) if units is None else units
        recompute = torch.is_grad_enabled() and self.recomputes(x.shape[0], op_w, run, units)
        for u in units:
            if recompute:
                # non-reentrant: backward recomputes each unit once, when its first saved tensor is
                # needed, running the same sampled ops (op_w / run are inputs); no RNG state to
                # restore (the sampling is outside, a unit draws nothing)
                x = checkpoint(
                    self._unit,
                    u,
                    x,
                    op_w,
                    bit_w,
                    bit_a,
                    run,
                    use_reentrant=False,
                    preserve_rng_state=False,
                    context_fn=lambda u=u: (contextlib.nullcontext(), _frozen_stats(self._modules_of(u))),
                )
            else:
                x = self._unit(u, x, op_w, bit_w, bit_a, run)
        return x

    def activation_bytes(
        self, batch: int, op_w: torch.Tensor, run: torch.Tensor | None = None, units: range | None = None
    ) -> float:
        """Estimated bytes of the activations a forward of `batch` images keeps for backward (float32)
        over the ops it runs (`run`, else the non-zero entries of op_w)."""
        paths = (op_w.detach() != 0) if run is None else run
        per_image = (paths.cpu().float() * self.op_activations).sum(1)
        if units is not None:
            per_image = per_image[list(units)]
        return float(per_image.sum()) * batch * 4 * _SAVED_PER_LAYER

    def recomputes(
        self, batch: int, op_w: torch.Tensor, run: torch.Tensor | None = None, units: range | None = None
    ) -> bool:
        """Whether a forward with gradients checkpoints its units (`recompute`, resolving "auto")."""
        if self.recompute == "auto":
            return self.activation_bytes(batch, op_w, run, units) > RECOMPUTE_AUTO_BYTES
        return bool(self.recompute)

    def _modules_of(self, u: int) -> list[nn.Module]:
        """Unit u's op modules and its shared weights (a _SharedOp does not own them)."""
        name = self.space.units[u].name
        return [self.units[u]] + ([self.shared[name]] if name in self.shared else [])

    def _unit(self, u: int, x, op_w, bit_w, bit_a, run=None) -> torch.Tensor:
        unit, ops = self.space.units[u], self.units[u]
        qw = None if bit_w is None else bit_w[u]
        qa = None if bit_a is None else bit_a[u]
        ch = None if bit_w is None else self.choices
        if unit.ops[0].kind == "fc":
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if len(ops) == 1:
            return _call(ops[0], x, qw, qa, ch)
        out = None
        xq = None if ch is None else mix_quant(x, qa, ch)  # once for all ops of the unit
        for o in active(op_w[u], None if run is None else run[u]):
            term = op_w[u, o] * _call(ops[o], x, qw, qa, ch, xq)
            out = term if out is None else out + term
        return out


@contextlib.contextmanager
def _frozen_stats(modules: list[nn.Module]):
    """Batch norms that normalise with the batch's statistics, as in training, while their running
    statistics and batch count stay as they are: the recomputation of a checkpointed unit must not
    count its batch a second time. Its updates go to scratch copies of the buffers. (Running the
    recomputation without buffers would save other tensors than the forward did, which checkpoint
    rejects; a zero momentum would still count the batch in num_batches_tracked, and 0 x a
    non-finite batch variance is NaN.)"""
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, nn.BatchNorm2d)]
    names = ("running_mean", "running_var", "num_batches_tracked")
    saved = [{k: getattr(m, k) for k in names} for m in bns]
    for m, buf in zip(bns, saved):
        for k, v in buf.items():
            if v is not None:
                setattr(m, k, v.clone())
    try:
        yield
    finally:
        for m, buf in zip(bns, saved):
            for k, v in buf.items():
                setattr(m, k, v)


_W_ONLY = torch.tensor([1.0, 0.0])  # see DerivedNet._qcall
_A_ONLY = torch.tensor([0.0, 1.0])


class DerivedNet(nn.Module):
    """The argmax network as a plain PyTorch module, with its per-unit bitwidths.

    `quantize=True` runs fake quantisation at the searched widths (for retraining); export uses the
    float module (`quantize=False`, BN folded) and quantises afterwards (see derive.export_onnx)."""

    def __init__(self, space: NetworkSpace, ops: list[int], bits: list[tuple[int, int]]):
        super().__init__()
        self.space, self.ops, self.bits = space, list(ops), list(bits)
        self.quantize = False
        self.order: list[str] = []
        for unit, o in zip(space.units, ops):
            op = unit.ops[o]
            if op.kind == "skip":
                continue
            self.add_module(unit.name, _op_module(unit, op))
            self.order.append(unit.name)
        self._bits = {u.name: b for u, b in zip(space.units, bits)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            m = getattr(self, name)
            if isinstance(m, QLinear):
                x = F.adaptive_avg_pool2d(x, 1).flatten(1)
            if self.quantize:
                wb, ab = self._bits[name]
                x = self._qcall(m, x, wb, ab)
            else:
                x = m(x)
        return x

    @staticmethod
    def _qcall(m: nn.Module, x, wb: int, ab: int):
        # one-hot mixes over the two widths [wb, ab]: every weight of the op at wb and every layer
        # input at ab -- inside a block too (expand -> dw -> project), as the supernet and the
        # accelerator run it
        return m(x, _W_ONLY, _A_ONLY, [wb, ab])

    def fuse(self) -> DerivedNet:
        for m in self.modules():
            if isinstance(m, ConvBNAct):
                m.fuse()
        return self

    def layer_names(self) -> list[str]:
        """The conv/linear module paths, in execution order: the codax layer names."""
        names = []
        for name in self.order:
            m = getattr(self, name)
            if isinstance(m, IRBlock):
                names += [f"{name}.{s}" for s in ("expand", "dw", "project") if getattr(m, s) is not None]
            else:
                names.append(name)
        return names
