"""DANCE mode: a small MLP learns the cost oracle, and the search differentiates through it.

The oracle maps (layer, bitwidths, accelerator point) to (cycles, energy pJ) under the best mapping
template. Oracles:
- `codax`: codax's exact cost model (cost_core on the mapping templates);
- `csv:<path>`: a user table with columns N,G,K,C,P,Q,R,S,stride,w_bits,a_bits,rows,cols,buf_W,
  buf_I,buf_O,dataflow,double_buffer,cycles,energy_pj (buffer sizes in KB, e.g. measured or from
  another tool);
- `<module>:<function>`: a callable taking a list of samples ({"layer": ir.Layer, "accel": dict of
  the accelerator choices, "cfg": option indices}) and returning [[cycles, energy_pj], ...] --
  how a ZigZag or Timeloop bridge plugs in.
Accelerator choices enter the MLP as (soft) one-hot vectors and bitwidths as expected widths, so
gradients reach accelerator, bit and (through the op mixing) network logits.
"""

from __future__ import annotations

import csv
import importlib
import math
import random
import time

import numpy as np
import torch
from torch import nn

from codax.errors import ConfigError
from codax.ir import DIMS
from codax.search.hwcost import LayerTable
from codax.search.space import AccelSpace

_D = {d: i for i, d in enumerate(DIMS)}


def layer_features(bound: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    """[..., 8] dims, [...] stride -> [..., 9] (log2 dims, stride)."""
    return torch.cat([torch.log2(bound), stride.unsqueeze(-1)], -1)


def accel_onehot(space: AccelSpace, cfg: tuple[int, ...]) -> torch.Tensor:
    return torch.cat(
        [torch.nn.functional.one_hot(torch.tensor(c), k).float() for c, k in zip(cfg, space.sizes)]
    )


class CostMLP(nn.Module):
    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2)
        )
        self.register_buffer("mu", torch.zeros(2))
        self.register_buffer("sd", torch.ones(2))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """(cycles, energy pJ), positive."""
        return torch.exp(self.net(f) * self.sd + self.mu)


def _codax_samples(cs, n_configs: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    lt: LayerTable = cs.lt
    space: AccelSpace = cs.space
    cfgs = space.all_configs()
    pick = cfgs if len(cfgs) <= n_configs else rng.sample(cfgs, n_configs)
    T = cs.hw.tables(pick)  # [V, n, B, M, 2]
    best = T[..., 0].argmin(-1, keepdim=True)  # the fastest template
    y = torch.gather(T, 3, best.unsqueeze(-1).expand(*best.shape, 2)).squeeze(3)  # [V, n, B, 2]
    V, n, B = y.shape[:3]
    lf = layer_features(lt.bound.float(), lt.stride[:, 0].float())  # [n, 9]
    bits = torch.stack([lt.wb, lt.ab], -1).float() / 8.0  # [B, 2]
    af = torch.stack([accel_onehot(space, c) for c in pick])  # [V, A]
    f = torch.cat(
        [
            lf.view(1, n, 1, -1).expand(V, n, B, -1),
            bits.view(1, 1, B, 2).expand(V, n, B, 2),
            af.view(V, 1, 1, -1).expand(V, n, B, -1),
        ],
        -1,
    )
    return f.reshape(V * n * B, -1), y.reshape(V * n * B, 2)


def _csv_samples(path: str, space: AccelSpace) -> tuple[torch.Tensor, torch.Tensor]:
    feats, ys = [], []
    with open(path) as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            try:
                bound = torch.tensor([float(row[d]) for d in DIMS])
                cfg = []
                for name, opts in zip(space.names, space.options):
                    v = row[name]
                    vals = [str(o).lower() for o in opts]
                    if v.lower() not in vals:
                        v = str(type(opts[0])(float(v))) if not isinstance(opts[0], (bool, str)) else v
                    cfg.append(vals.index(v.lower()))
                f = torch.cat(
                    [
                        layer_features(bound, torch.tensor(float(row["stride"]))),
                        torch.tensor([float(row["w_bits"]) / 8, float(row["a_bits"]) / 8]),
                        accel_onehot(space, tuple(cfg)),
                    ]
                )
                feats.append(f)
                ys.append([float(row["cycles"]), float(row["energy_pj"])])
            except (KeyError, ValueError) as e:
                raise ConfigError(
                    f"surrogate.oracle csv {path} row {i + 2}: {e!r}; see codax/search/surrogate.py "
                    "for the columns and use values from the accelerator options"
                ) from None
    if not feats:
        raise ConfigError(f"surrogate.oracle csv {path}: no rows")
    return torch.stack(feats), torch.tensor(ys)


def _callable_samples(spec: str, cs, n: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    mod, _, fn = spec.partition(":")
    try:
        oracle = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"surrogate.oracle {spec!r}: cannot import ({e}); use codax, csv:<path> or <module>:<function>"
        ) from None
    lt, space = cs.lt, cs.space
    samples, feats = [], []
    cfgs = space.all_configs()
    for _ in range(n):
        li, b, cfg = rng.randrange(len(lt.layers)), rng.randrange(lt.wb.shape[0]), rng.choice(cfgs)
        from codax.ir import Precision

        wb, ab = int(lt.wb[b]), int(lt.ab[b])
        layer = lt.layers[li].with_(precision=Precision(weight=wb, act=ab, acc=32, out=ab))
        samples.append({"layer": layer, "accel": space.describe(cfg), "cfg": cfg})
        feats.append(
            torch.cat(
                [
                    layer_features(lt.bound[li].float(), lt.stride[li, 0].float()),
                    torch.tensor([wb / 8, ab / 8]),
                    accel_onehot(space, cfg),
                ]
            )
        )
    y = torch.tensor(np.asarray(oracle(samples), dtype=np.float64), dtype=torch.float32)
    return torch.stack(feats), y


def train_mlp(
    f: torch.Tensor, y: torch.Tensor, hidden: int, epochs: int, lr: float, seed: int
) -> tuple[CostMLP, dict]:
    """Fit log-costs; report the held-out (20%) mean absolute percentage error."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(f), generator=g)
    n_te = max(1, len(f) // 5)
    te, tr = perm[:n_te], perm[n_te:]
    ly = torch.log(y.clamp(min=1e-6))
    m = CostMLP(f.shape[1], hidden)
    m.mu.copy_(ly[tr].mean(0))
    m.sd.copy_(ly[tr].std(0).clamp(min=1e-3))
    target = (ly - m.mu) / m.sd
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    torch.manual_seed(seed)
    for _ in range(epochs):
        for idx in tr[torch.randperm(len(tr), generator=g)].split(512):
            loss = nn.functional.mse_loss(m.net(f[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = m(f[te])
        mape = ((pred - y[te]).abs() / y[te].clamp(min=1e-6)).mean(0)
    return m.eval(), {
        "heldout_mape_cycles": float(mape[0]),
        "heldout_mape_energy": float(mape[1]),
        "train_samples": len(tr),
        "heldout_samples": len(te),
    }


def attach_surrogate(cs) -> dict:
    """Sample the oracle, train the MLP, and make the search's hardware term use it."""
    s = cs.cfg.surrogate
    rng = random.Random(cs.seed)
    t0 = time.perf_counter()
    spec = str(s.oracle)
    n = int(s.samples)
    if spec == "codax":
        per_cfg = len(cs.lt.layers) * cs.lt.wb.shape[0]
        f, y = _codax_samples(cs, max(4, math.ceil(n / per_cfg)), rng)
    elif spec.startswith("csv:"):
        f, y = _csv_samples(spec[4:], cs.space)
    elif ":" in spec:
        f, y = _callable_samples(spec, cs, n, rng)
    else:
        raise ConfigError(f"surrogate.oracle {spec!r} must be codax, csv:<path> or <module>:<function>")
    sample_s = time.perf_counter() - t0
    model, rep = train_mlp(f, y, int(s.hidden), int(s.epochs), float(s.lr), cs.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    lt = cs.lt
    lf = layer_features(lt.bound.float(), lt.stride[:, 0].float())
    choices = torch.tensor(lt.bits, dtype=torch.float32)

    def predict(units, p_w, p_a, probs):
        idx = lt.index[units]  # [u, O, S]
        u, O, S = idx.shape
        feats = lf[idx.clamp(min=0)]  # [u, O, S, 9]
        bits = torch.stack([(p_w[units] * choices).sum(-1), (p_a[units] * choices).sum(-1)], -1) / 8.0
        acc = torch.cat(list(probs))
        f = torch.cat(
            [feats, bits.view(u, 1, 1, 2).expand(u, O, S, 2), acc.view(1, 1, 1, -1).expand(u, O, S, -1)], -1
        )
        return model(f) * (idx >= 0).unsqueeze(-1).float()

    cs.hw.surrogate = predict
    cs.surrogate_model = model
    return {
        "oracle": spec,
        "samples": len(f),
        "sample_seconds": sample_s,
        "train_seconds": time.perf_counter() - t0 - sample_s,
        **rep,
    }
