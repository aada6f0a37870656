"""Tests for codax.bench.zigzag_bridge: ZigZag's own cost model / LOMA mapper on one layer."""

from __future__ import annotations

import logging
import math
import os

import pytest

pytest.importorskip("zigzag")

from codax.bench import zigzag_bridge as zb  # noqa: E402

TPU_KC = {"D1": [("K", 32)], "D2": [("C", 32)]}


def tiny_layer() -> zb.ZigZagLayer:
    # 1x1 conv, K = C = 32 fills tpu_like's 32x32 array exactly; 4x4 output pixels -> 16 temporal steps
    return zb.ZigZagLayer("tiny", N=1, G=1, K=32, C=32, P=4, Q=4, R=1, S=1)


# ------------------------------------------------------------------------------------------------------------
# names, paths, errors
# ------------------------------------------------------------------------------------------------------------
def test_hardware_and_workload_paths():
    assert {"tpu_like", "eyeriss_like"} <= set(zb.available_hardware())
    assert os.path.isfile(zb.hardware_path("tpu_like"))
    assert zb.hardware_path(zb.hardware_path("eyeriss_like")) == zb.hardware_path("eyeriss_like")
    for name in ("resnet18", "mobilenetv2", "alexnet"):
        assert os.path.isfile(zb.workload_onnx_path(name))
    with pytest.raises(ValueError, match="tpu_like.*") as info:
        zb.hardware_path("no_such_accelerator")
    assert "eyeriss_like" in str(info.value) and "no_such_accelerator" in str(info.value)
    with pytest.raises(ValueError, match="resnet18"):
        zb.workload_onnx_path("vgg")
    with pytest.raises(ValueError, match="available"):
        zb.evaluate_fixed(tiny_layer(), "nope", TPU_KC, [("P", 4), ("Q", 4)])


def test_describe_hardware_tpu_like():
    desc = zb.describe_hardware("tpu_like")
    assert desc["array"] == {"D1": 32, "D2": 32}
    names = {op: [lvl["name"] for lvl in levels] for op, levels in desc["operands"].items()}
    assert names == {"O": ["rf_2B", "sram_2MB", "dram"], "W": ["rf_128B", "dram"], "I": ["sram_2MB", "dram"]}
    rf_w = desc["operands"]["W"][0]
    assert rf_w["size_bits"] == 1024 and rf_w["instances"] == 1024 and rf_w["r_cost_pj"] == 0.095
    assert zb.bundled_default_spatial("tpu_like") == TPU_KC
    assert zb.bundled_default_spatial("eyeriss_like") is None


def test_workload_and_mapping_dicts_use_zigzag_schema():
    layer = zb.ZigZagLayer(
        "c", N=2, G=1, K=8, C=4, P=5, Q=6, R=3, S=2, stride=(2, 1), dilation=(1, 2), padding=(1, 0, 2, 3)
    )
    d = zb.workload_dict(layer)
    assert d["loop_dims"] == ["B", "G", "K", "C", "OY", "OX", "FY", "FX"]
    assert d["loop_sizes"] == [2, 1, 8, 4, 5, 6, 3, 2]
    assert d["dimension_relations"] == ["ix=1*ox+2*fx", "iy=2*oy+1*fy"]
    assert d["pr_loop_dims"] == ["IY", "IX"] and d["padding"] == [[1, 2], [0, 3]]
    assert d["operand_precision"] == {"W": 8, "I": 8, "O": 16, "O_final": 8}
    m = zb.mapping_entries(TPU_KC, [("P", 5), ("S", 2)])
    assert m[0]["spatial_mapping"] == {"D1": ["K, 32"], "D2": ["C, 32"]}
    assert m[0]["temporal_ordering"] == [["OY", 5], ["FX", 2]]
    # input extent from relations and padding: rows 2*4 + 1*2 + 1 - 3, cols 1*5 + 2*1 + 1 - 3
    node = zb._build_layer_node(layer, None)
    assert {str(k): v for k, v in node.pr_layer_dim_sizes.items()} == {"IY": 8, "IX": 5}
    assert node.total_mac_count == layer.macs == 2 * 8 * 4 * 5 * 6 * 3 * 2


# ------------------------------------------------------------------------------------------------------------
# hand calculation
# ------------------------------------------------------------------------------------------------------------
def test_tiny_layer_matches_hand_calculation():
    layer = tiny_layer()
    r = zb.evaluate_fixed(layer, "tpu_like", TPU_KC, [("P", 4), ("Q", 4)])
    macs = 32 * 32 * 4 * 4
    assert r.macs == macs == 16384
    # compute: all 1024 PEs busy every cycle -> the temporal loops meet the lower bound macs / #PEs
    lat = r.latency_breakdown
    assert lat["ideal_cycle"] == macs / 1024 == 16
    assert lat["ideal_temporal_cycle"] == 16 and r.spatial_utilization == 1.0
    assert lat["stall_slack_comb"] == 0 and lat["latency_total0"] == 16
    # tpu_like's D1 and D2 are systolic: results drain (32 - 1) + (32 - 1) cycles after the last MAC
    assert lat["systolic_drain_cycle"] == 62
    # onloading: 1024 weights * 8 b over the 64 b/cycle DRAM port = 128 cycles, of which the 16 compute cycles
    # overlap; the 512 inputs (64 cycles) load in parallel and are hidden behind the weights
    assert lat["data_onloading_cycle"] == 1024 * 8 / 64 - 16 == 112
    # offloading: 512 final 8-bit outputs, sram -> DRAM at 64 b/cycle (64) + one 16-bit register read (1)
    assert lat["data_offloading_cycle"] == 512 * 8 / 64 + 1 == 65
    assert r.latency_cycles == 16 + 0 + 112 + 65 + 62 == 255
    assert r.latency_cycles >= macs / 1024
    assert r.utilization == pytest.approx(16 / 255)

    # energy: MACs at 0.04 pJ, DRAM reads 700 pJ / writes 750 pJ per 64-bit word
    assert r.mac_energy_pj == pytest.approx(macs * 0.04)
    acc = r.accesses
    assert acc["W"]["dram"]["words"]["rd_out_to_low"] == 1024 * 8 / 64 == 128
    assert acc["I"]["dram"]["words"]["rd_out_to_low"] == 512 * 8 / 64 == 64
    assert acc["O"]["dram"]["words"]["wr_in_by_low"] == 512 * 8 / 64 == 64
    assert acc["W"]["dram"]["total_energy_pj"] == pytest.approx(128 * 700)
    assert acc["O"]["dram"]["total_energy_pj"] == pytest.approx(64 * 750)
    # weight stationary: each PE's weight register is written once and read once (the weight stays at the
    # multiplier input for the 16 P x Q iterations)
    assert acc["W"]["rf_128B"]["words"] == {
        "rd_out_to_low": 1024,
        "wr_in_by_low": 0,
        "rd_out_to_high": 0,
        "wr_in_by_high": 1024,
    }
    # inputs / final outputs pass once through the 2048-bit sram port: 4096 bits = 2 words each way
    assert (
        acc["I"]["sram_2MB"]["words"]["wr_in_by_high"] == 2
        and acc["I"]["sram_2MB"]["words"]["rd_out_to_low"] == 2
    )
    assert acc["O"]["sram_2MB"]["words"]["wr_in_by_low"] == 2
    # the C reduction is spatial (above the per-PE 16-bit psum registers): every MAC writes one psum; ZigZag's
    # element count skips the read before the first accumulation (512 * 31 reads), its word count / energy not
    assert acc["O"]["rf_2B"]["elems"]["wr_in_by_low"] == macs
    assert acc["O"]["rf_2B"]["elems"]["rd_out_to_low"] == 512 * (32 - 1)
    assert acc["O"]["rf_2B"]["words"]["rd_out_to_low"] == macs
    level_sum = sum(lvl["total_energy_pj"] for levels in acc.values() for lvl in levels.values())
    assert r.mem_energy_pj == pytest.approx(level_sum)
    assert r.energy_pj == pytest.approx(r.mac_energy_pj + r.mem_energy_pj)

    assert r.temporal == [("P", 4), ("Q", 4)]
    assert r.spatial == TPU_KC
    assert r.mem_levels == {
        "O": ["rf_2B", "sram_2MB", "dram"],
        "W": ["rf_128B", "dram"],
        "I": ["sram_2MB", "dram"],
    }
    # O: psum register cannot hold more than one 16-bit value, so P, Q live in the sram level
    assert r.temporal_per_level["O"] == [[], [("P", 4), ("Q", 4)], []]
    assert r.temporal_per_level["W"] == [[("P", 4), ("Q", 4)], []]


def test_half_used_array_doubles_temporal_cycles():
    layer = zb.ZigZagLayer("half", N=1, G=1, K=16, C=32, P=4, Q=4, R=1, S=1)
    r = zb.evaluate_fixed(layer, "tpu_like", {"D1": [("K", 16)], "D2": [("C", 32)]}, [("Q", 4), ("P", 4)])
    assert r.latency_breakdown["ideal_cycle"] == math.ceil(r.macs / 1024) == 8
    assert r.latency_breakdown["ideal_temporal_cycle"] == 16
    assert r.spatial_utilization == 0.5
    assert r.temporal == [("Q", 4), ("P", 4)]


# ------------------------------------------------------------------------------------------------------------
# fixed evaluation semantics
# ------------------------------------------------------------------------------------------------------------
def test_incomplete_or_bad_temporal_is_rejected():
    layer = tiny_layer()
    with pytest.raises(ValueError, match="not complete"):
        zb.evaluate_fixed(layer, "tpu_like", TPU_KC, [("P", 4)])  # ZigZag would search the rest
    with pytest.raises(ValueError, match="not complete"):
        zb.evaluate_fixed(layer, "tpu_like", TPU_KC, [("P", 4), ("Q", 2)])
    with pytest.raises(ValueError, match="unknown loop dim"):
        zb.evaluate_fixed(layer, "tpu_like", TPU_KC, [("OX", 4), ("P", 4)])
    with pytest.raises(ValueError, match="OA dims"):
        zb.evaluate_fixed(layer, "tpu_like", {"D3": [("K", 2)]}, [("P", 4), ("Q", 4)])


def test_orderings_differ_and_cached_evaluator_is_stateless():
    layer = zb.ZigZagLayer("l", N=1, G=1, K=64, C=64, P=8, Q=8, R=3, S=3, padding=(1, 1, 1, 1))
    orders = [
        [("R", 3), ("S", 3), ("C", 2), ("P", 8), ("Q", 8), ("K", 2)],
        [("K", 2), ("P", 8), ("Q", 8), ("C", 2), ("R", 3), ("S", 3)],
        [("Q", 8), ("P", 8), ("K", 2), ("R", 3), ("S", 3), ("C", 2)],
    ]
    many = zb.evaluate_fixed_many(layer, "tpu_like", TPU_KC, orders)
    assert len({(r.latency_cycles, r.energy_pj) for r in many}) > 1
    for order, ref in zip(orders + orders[::-1], many + many[::-1]):
        for reuse in (True, False):
            r = zb.evaluate_fixed(layer, "tpu_like", TPU_KC, order, reuse=reuse)
            assert (r.latency_cycles, r.energy_pj, r.accesses) == (
                ref.latency_cycles,
                ref.energy_pj,
                ref.accesses,
            )
            assert r.temporal == order


def test_matches_zigzag_api_with_temporal_ordering_in_mapping_yaml(tmp_path):
    """The bridge equals ZigZag's own API fed the list-of-dict workload and a mapping YAML that carries the
    spatial mapping and a complete `temporal_ordering` (the documented way to fix the loop order)."""
    import yaml
    from zigzag.api import get_hardware_performance_zigzag

    layer = zb.ZigZagLayer("l", N=1, G=1, K=64, C=32, P=7, Q=7, R=3, S=3, stride=(2, 2), padding=(1, 1, 1, 1))
    temporal = [("S", 3), ("R", 3), ("Q", 7), ("P", 7), ("K", 2)]
    mapping_yaml = tmp_path / "mapping.yaml"
    mapping_yaml.write_text(yaml.safe_dump(zb.mapping_entries(TPU_KC, temporal, name=layer.name)))
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        energy, latency, cmes = get_hardware_performance_zigzag(
            [zb.workload_dict(layer)],
            zb.hardware_path("tpu_like"),
            str(mapping_yaml),
            opt="latency",
            dump_folder=str(tmp_path / "out"),
            loma_show_progress_bar=False,
        )
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    r = zb.evaluate_fixed(layer, "tpu_like", TPU_KC, temporal)
    assert (r.energy_pj, r.latency_cycles) == (energy, latency)


# ------------------------------------------------------------------------------------------------------------
# LOMA search
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hardware,layer,objective",
    [
        ("tpu_like", tiny_layer(), "latency"),
        # C=16 on eyeriss' 14-wide D1 is a non-divisor unrolling: ZigZag maps it greedily (2 temporal steps)
        ("eyeriss_like", zb.ZigZagLayer("e", N=1, G=1, K=24, C=16, P=6, Q=6, R=1, S=1), "energy"),
    ],
)
def test_search_loma_round_trips_through_evaluate_fixed(hardware, layer, objective):
    best = zb.search_loma(layer, hardware, objective=objective, lpf_limit=4)
    assert best.n_evaluated > 1 and best.wall_s > 0
    assert best.latency_cycles >= best.macs / math.prod(zb.describe_hardware(hardware)["array"].values())
    again = zb.evaluate_fixed(layer, hardware, best.spatial, best.temporal)
    assert again.latency_cycles == best.latency_cycles
    assert again.energy_pj == best.energy_pj
    assert again.accesses == best.accesses
    assert again.temporal_per_level == best.temporal_per_level
    assert again.temporal == best.temporal and again.spatial == best.spatial
    # all temporal loops together cover the layer (ceil-divided for greedy, non-divisor spatial unrolling)
    for dim, size in layer.dims.items():
        spatial = math.prod(f for unrolls in best.spatial.values() for d, f in unrolls if d == dim)
        temporal = math.prod(f for d, f in best.temporal if d == dim)
        assert temporal == math.ceil(size / spatial)


def test_search_with_fixed_spatial_is_never_worse_than_a_fixed_ordering():
    layer = tiny_layer()
    best = zb.search_loma(layer, "tpu_like", objective="latency", spatial=TPU_KC)
    assert best.spatial == TPU_KC
    fixed = zb.evaluate_fixed(layer, "tpu_like", TPU_KC, [("P", 4), ("Q", 4)])
    assert best.latency_cycles <= fixed.latency_cycles
    with pytest.raises(ValueError, match="objective"):
        zb.search_loma(layer, "tpu_like", objective="area")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# ONNX models
# ------------------------------------------------------------------------------------------------------------
def test_conv_layers_from_bundled_onnx_models():
    resnet = zb.conv_layers_from_onnx("resnet18")
    assert len(resnet) == 21 and resnet[-1].op_type == "Gemm"
    conv1 = resnet[0]
    assert (conv1.N, conv1.G, conv1.K, conv1.C, conv1.P, conv1.Q, conv1.R, conv1.S) == (
        1,
        1,
        64,
        3,
        112,
        112,
        7,
        7,
    )
    assert conv1.stride == (2, 2) and conv1.padding == (3, 3, 3, 3) and conv1.input_hw == (224, 224)
    fc = resnet[-1]
    assert (fc.N, fc.K, fc.C, fc.P, fc.Q, fc.R, fc.S) == (1, 1000, 512, 1, 1, 1, 1)
    # the well-known 1.8 GMAC of ResNet-18: 1,813,561,344 in the convolutions + 512,000 in the classifier
    assert sum(layer.macs for layer in resnet[:-1]) == 1_813_561_344 and fc.macs == 512_000

    mobilenet = zb.conv_layers_from_onnx("mobilenetv2")
    depthwise = [layer for layer in mobilenet if layer.G > 1]
    assert depthwise and all(layer.K == 1 and layer.C == 1 for layer in depthwise)
    assert sum(layer.macs for layer in mobilenet) == 300_774_272  # ~300 MMAC

    alexnet = zb.conv_layers_from_onnx(zb.workload_onnx_path("alexnet"))
    assert [layer.op_type for layer in alexnet].count("Gemm") == 3 and len(alexnet) == 8
    assert alexnet[0].stride == (4, 4) and (alexnet[0].R, alexnet[0].P) == (11, 54)


# ------------------------------------------------------------------------------------------------------------
# side effects
# ------------------------------------------------------------------------------------------------------------
def test_writes_nothing_and_keeps_zigzag_quiet(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="zigzag")
    zb.search_loma(tiny_layer(), "tpu_like", spatial=TPU_KC, lpf_limit=3)
    zb.evaluate_fixed(tiny_layer(), "tpu_like", TPU_KC, [("Q", 4), ("P", 4)], reuse=False)
    assert list(tmp_path.iterdir()) == []
    assert not [
        rec for rec in caplog.records if rec.name.startswith("zigzag") and rec.levelno < logging.WARNING
    ]
    assert logging.getLogger("zigzag").level == logging.INFO  # restored after the calls
