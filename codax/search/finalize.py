"""After the search: retrain the derived network from scratch, export it, write the hand-off files."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codax.hw.library import load_accelerator
from codax.ir import dump_yaml, save_mappings
from codax.search.derive import Design, derived_module, export_onnx, export_qdq, onnx_outputs
from codax.search.supernet import DerivedNet

NAMING = (
    "layer name = ONNX node name = PyTorch module path of the derived network "
    "(stem, b<i>.expand, b<i>.dw, b<i>.project, head, fc)"
)


def retrain(
    model: DerivedNet,
    data,
    epochs: int,
    lr: float,
    batch_size: int,
    quantize: bool,
    seed: int,
    progress: bool = False,
) -> DerivedNet:
    """Train the derived network from scratch on train + val (fake-quantised at its searched widths)."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    x = torch.cat([data.train[0], data.val[0]])
    y = torch.cat([data.train[1], data.val[1]])
    model.quantize = quantize
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="retrain", leave=False, disable=None if progress else True):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def train_from_scratch(
    net, design: Design, data, epochs: int, lr: float, batch_size: int, quantize: bool, seed: int
) -> DerivedNet:
    """A fresh derived network, initialised and trained from `seed` alone: the same seed gives the
    same run whatever ran before (the initialisation draws from the global generator)."""
    torch.manual_seed(seed)
    return retrain(derived_module(net, design), data, epochs, lr, batch_size, quantize, seed)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def _core_figures(model: Path, accel, mappings) -> dict:
    """The derived design as the generated core runs it (what `codax compile` reports: codax.flow.
    core_figures), beside the search's model of it; the core's reason where it cannot be the accelerator
    or run a layer."""
    from codax.errors import UnsupportedError
    from codax.flow import core_figures

    try:
        return core_figures(model, accel, mappings)
    except UnsupportedError as e:
        return {"refused": str(e)}


def finalize_design(cs, d: Design, out: Path, progress: bool = True) -> dict:
    """Retrain, export net.onnx (+ net_float.onnx), accel.yaml, mappings.yaml, architecture.json,
    plots; returns the summary entries."""
    cfg = cs.cfg
    t0 = time.perf_counter()
    graph, accel, mappings, cost = cs.exact_artifacts(d)
    accel_path = out / "accel.yaml"
    dump_yaml(accel.to_dict(), accel_path)
    load_accelerator(accel_path)  # the hand-off must load back
    widths = {la.name: la.precision for la in graph.layers}  # checked against net.onnx's at compile
    handed = {name: replace(m, precision=widths[name]) for name, m in mappings.items()}
    save_mappings(
        handed,
        out / "mappings.yaml",
        extra={"network": "cosearch", "accelerator": accel.name, "naming": NAMING},
    )
    r = cfg.retrain
    torch.manual_seed(cs.seed + 1000)  # the initialisation too (see train_from_scratch)
    model = derived_module(cs.net, d)
    retrain(
        model,
        cs.data,
        int(r.epochs),
        float(r.lr),
        int(r.batch_size),
        bool(r.quantize),
        cs.seed + 1000,
        progress,
    )
    xt, yt = cs.data.test
    model.quantize = bool(r.quantize)
    acc_q = accuracy(model, xt, yt)
    model.quantize = False
    model.fuse().eval()
    acc_f = accuracy(model, xt, yt)
    torch.save(
        {"state_dict": model.state_dict(), "design": d.__dict__, "config": cfg.to_dict()}, out / "net.pt"
    )
    e = cfg.export
    float_path = out / "net_float.onnx"
    export_onnx(model, str(float_path), cs.data.shape, int(e.opset))
    with torch.no_grad():
        ref = model(xt).numpy()
    got = onnx_outputs(str(float_path), xt.numpy())
    res: dict = {
        "test_acc_quantized": acc_q,
        "test_acc_float": acc_f,
        "onnx_float_max_abs_diff": float(np.abs(got - ref).max()),
    }
    if e.qdq:
        calib = cs.data.train[0][: 16 * int(e.calib_batches)]
        res["test_acc_fake_quant"] = res.pop("test_acc_quantized")  # per-batch ranges, as trained
        res.update(export_qdq(model, str(float_path), str(out / "net.onnx"), calib, cs.data.test))
    else:
        (out / "net.onnx").write_bytes(float_path.read_bytes())
    res["core"] = (
        _core_figures(out / "net.onnx", accel, handed)
        if e.qdq
        else {"refused": "net.onnx is the float network (export.qdq false); the core runs integer networks"}
    )
    arch = {
        "naming": NAMING,
        "layers": [
            {
                "name": la.name,
                "kind": la.kind,
                "weight_bits": la.precision.weight,
                "act_bits": la.precision.act,
                "macs": la.macs,
            }
            for la in graph.layers
        ],
        **d.to_dict(cs.net, cs.space),
    }
    (out / "architecture.json").write_text(json.dumps(arch, indent=2))
    try:
        from codax.search.plots import plot_trajectory

        plot_trajectory(cs.history, out / "trajectory.png")
        res["plots"] = ["trajectory.png"]
    except Exception as ex:  # plotting must never lose a search result
        res["plots_error"] = str(ex)
    res["handoff"] = (
        f"codax compile {out / 'net.onnx'} --accel {accel_path} --mappings {out / 'mappings.yaml'}"
    )
    res["finalize_seconds"] = time.perf_counter() - t0
    return res
