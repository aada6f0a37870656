"""A QDQ model quantized by onnxruntime on sklearn digits: integer layers, matching ORT within 1 LSB."""

from __future__ import annotations

import numpy as np
import onnx

from codax.frontend import extract_graph, import_onnx
from codax.passes import build_report, offloaded_layers, pipeline
from tests.passes.helpers import int8_accel, ort_session, relax_vm
from tests.passes.models import digits


def _output_qparams(path):
    m = onnx.load(str(path))
    out = m.graph.output[0].name
    node = next(n for n in m.graph.node if out in n.output and n.op_type == "DequantizeLinear")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    return float(inits[node.input[1]]), int(inits[node.input[2]])


def test_qdq_matches_ort_within_one_lsb(digits_qdq):
    ref = pipeline(int8_accel(), offload=False, map_layers=False)(import_onnx(digits_qdq))
    scale, _ = _output_qparams(digits_qdq)
    run, sess = relax_vm(ref), ort_session(digits_qdq)
    diffs = []
    for x in digits(200)[::4]:
        x = x[None]
        got = run(x)
        want = sess.run(None, {"input": x})[0]
        diffs.append(np.round(np.abs(got - want) / scale))
    d = np.concatenate([a.ravel() for a in diffs])
    rate = float(np.mean(d > 0))
    print(f"QDQ {digits_qdq.name}: {d.size} outputs, mismatch rate {rate:.4%}, max {int(d.max())} LSB")
    assert d.max() <= 1
    assert rate < 0.05


def test_qdq_layers_are_integer_with_requant(digits_qdq):
    accel = int8_accel()
    mod = pipeline(accel)(import_onnx(digits_qdq))
    offl = offloaded_layers(mod)
    assert len(offl) == 5
    for o in offl.values():
        p = o.layer.precision
        assert (p.kind, p.weight, p.act, p.acc) == ("int", 8, 8, 32)
        assert o.layer.epilogue.requant and o.cycles > 0
    kinds = sorted(o.layer.kind for o in offl.values())
    assert kinds == ["conv", "conv", "conv", "dense", "depthwise"]
    rep = build_report(mod, accel)
    q = [r for r in rep.nodes if r.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert any(r.placement == "fused" for r in q) and all(r.reason for r in q)
    g = extract_graph(digits_qdq)
    assert {layer.name for layer in g.layers} == set(offl)
