"""Derive + export: ONNX Runtime reproduces the PyTorch derived network; names match mappings.yaml."""

from __future__ import annotations

import json

import numpy as np
import onnx
import torch

from codax.frontend import extract_graph, import_onnx
from codax.hw.library import load_accelerator
from codax.ir import load_mappings
from codax.passes import offloaded_layers, pipeline
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
    # per layer, on PyTorch's own integer tensors: within one step (codax.verify); end to end reported
    assert s["onnx_qdq_layers_checked"] >= 4 and s["onnx_qdq_layers_failing"] == []
    assert s["onnx_qdq_layer_max_steps"] <= 1
    assert sum(s["onnx_qdq_steps_histogram"].values()) > 0 and 0.0 <= s["onnx_qdq_top1_agreement"] <= 1.0
    # QDQ really is quantized
    qm = onnx.load(tmp_path / "net.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in qm.graph.node)
    # layer names: every Conv/Gemm node of both models is a layer of mappings.yaml, and vice versa
    maps = load_mappings(tmp_path / "mappings.yaml")
    for path in ("net_float.onnx", "net.onnx"):
        m = onnx.load(tmp_path / path)
        names = {n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm")}
        assert names == set(maps), (path, names ^ set(maps))
    # the widths the search chose are the model's own (read back from its types and ranges)
    layers = {la.name: la.precision for la in extract_graph(tmp_path / "net.onnx").layers}
    arch = {
        la["name"]: (la["weight_bits"], la["act_bits"])
        for la in json.loads((tmp_path / "architecture.json").read_text())["layers"]
    }
    for name, m in maps.items():
        assert m.precision is not None and layers[name] == m.precision, name
        assert (m.precision.weight, m.precision.act) == arch[name]
    # the hand-off compiles with nothing else: every layer offloaded with the file's mapping and widths
    accel = load_accelerator(tmp_path / "accel.yaml")
    mod = pipeline(accel, tmp_path / "mappings.yaml")(
        import_onnx(tmp_path / "net.onnx", {"input": [1, 1, 8, 8]})
    )
    offl = offloaded_layers(mod)
    assert set(offl) == set(maps)
    for name, o in offl.items():
        assert o.mapping_source == "mappings.yaml" and o.layer.precision == maps[name].precision


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
