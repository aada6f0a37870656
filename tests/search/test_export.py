"""Derive + export: ONNX Runtime reproduces the PyTorch derived network; names match mappings.yaml."""

from __future__ import annotations

import json

import numpy as np
import onnx
import torch

from codax.ir import load_mappings
from codax.search import run_search
from codax.search.derive import onnx_outputs


def test_export_float_and_qdq(tiny, tmp_path):
    r = run_search(tiny, tmp_path, progress=False)
    s = r.summary
    for f in (
        "net.onnx",
        "net_float.onnx",
        "accel.yaml",
        "mappings.yaml",
        "metrics.jsonl",
        "metrics.csv",
        "architecture.json",
        "summary.json",
        "trajectory.png",
        "net.pt",
    ):
        assert (tmp_path / f).exists(), f
    assert s["onnx_float_max_abs_diff"] < 1e-4
    assert s["onnx_qdq_top1_agreement"] >= 0.9
    # QDQ really is quantized
    qm = onnx.load(tmp_path / "net.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in qm.graph.node)
    # layer names: every Conv/Gemm node of both models is a layer of mappings.yaml, and vice versa
    maps = load_mappings(tmp_path / "mappings.yaml")
    for path in ("net_float.onnx", "net.onnx"):
        m = onnx.load(tmp_path / path)
        names = {n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm")}
        assert names == set(maps), (path, names ^ set(maps))
    bits = json.loads({p.key: p.value for p in qm.metadata_props}["codax.bits"])
    assert set(bits) == set(maps)


def test_onnx_matches_derived_module(tiny, tmp_path):
    """Direct check of the export path on the derived (fused) PyTorch module."""
    from codax.search.config import load_config
    from codax.search.cosearch import CoSearch
    from codax.search.derive import derived_module, export_onnx

    cs = CoSearch(load_config(tiny))
    model = derived_module(cs.net, cs.design())
    model.train()
    model(torch.randn(16, *cs.data.shape))  # non-trivial BN statistics
    model.eval().fuse()
    export_onnx(model, str(tmp_path / "n.onnx"), cs.data.shape)
    x = cs.data.test[0][:32]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(onnx_outputs(str(tmp_path / "n.onnx"), x.numpy()), ref, rtol=1e-4, atol=1e-5)
