"""ZigZag <-> codax mapping translation, and codax's cost model against ZigZag's on the same mapping."""

from __future__ import annotations

import pytest

pytest.importorskip("zigzag")

from codax.bench import zigzag_bridge as zb  # noqa: E402
from codax.bench.zigzag_mirror import from_zigzag, to_zigzag  # noqa: E402
from codax.hw import evaluate  # noqa: E402
from codax.hw.evaluate import evaluate_core  # noqa: E402

TPU_KC = {"D1": [("K", 32)], "D2": [("C", 32)]}


@pytest.fixture(scope="module")
def loma_tpu():
    layer = zb.ZigZagLayer(
        "c", N=1, G=1, K=64, C=64, P=14, Q=14, R=3, S=3, padding=(1, 1, 1, 1), input_hw=(14, 14)
    )
    return layer, zb.search_loma(layer, "tpu_like", spatial=TPU_KC)


def test_zigzag_mapping_round_trips_through_codax(loma_tpu):
    layer, res = loma_tpu
    mirror = from_zigzag(layer, "tpu_like", res)
    spatial, temporal = to_zigzag(mirror.mapping, mirror.accel)
    # codax -> ZigZag gives back ZigZag's own loop nest, and ZigZag's evaluation of it is LOMA's
    assert spatial == res.spatial
    assert temporal == [(d, int(f)) for d, f in res.temporal if f > 1]
    again = zb.evaluate_fixed(layer, "tpu_like", spatial, temporal)
    assert again.latency_cycles == res.latency_cycles and again.energy_pj == res.energy_pj
    # ... and ZigZag -> codax of that evaluation is the same codax mapping
    assert from_zigzag(layer, "tpu_like", again).mapping.to_dict() == mirror.mapping.to_dict()


def test_codax_counts_match_zigzag_on_its_own_mapping(loma_tpu):
    layer, res = loma_tpu
    m = from_zigzag(layer, "tpu_like", res)
    cost = evaluate(m.layer, m.accel, m.mapping, check=False)
    zz = res.accesses
    # per-MAC register traffic and compulsory DRAM traffic are counted identically
    assert cost.macs == 64 * 64 * 14 * 14 * 9
    assert cost.words_in["rf_128B"]["W"] == zz["W"]["rf_128B"]["elems"]["wr_in_by_high"]
    assert cost.words_out["sram_2MB"]["O"] == zz["O"]["dram"]["elems"]["wr_in_by_low"]
    _, out = evaluate_core(m.layer, m.accel, m.mapping)
    assert out.compute_cycles.item() == res.latency_breakdown["ideal_temporal_cycle"]
    # energy within 15% (the gap: codax moves padding positions and on-chip outputs at accumulator
    # width, see docs/zigzag_comparison.md)
    assert cost.energy_pj == pytest.approx(res.energy_pj, rel=0.15)
    # this small layer is memory bound: codax loads the first tiles (here all weights) before compute
    # starts, ZigZag streams them; codax can only be slower, and never below the DRAM roofline
    dram_bytes = cost.dram_bytes
    assert out.cycles.item() >= max(res.latency_cycles, dram_bytes / m.accel.dram.bandwidth)


def test_latency_matches_zigzag_on_a_compute_bound_layer():
    """ResNet-18 layer3.0.conv2 on tpu_like: both models agree once codax's output drain is left out."""
    layer = zb.ZigZagLayer(
        "l3", N=1, G=1, K=256, C=256, P=14, Q=14, R=3, S=3, padding=(1, 1, 1, 1), input_hw=(14, 14)
    )
    res = zb.search_loma(layer, "tpu_like", spatial=TPU_KC)
    m = from_zigzag(layer, "tpu_like", res)
    _, out = evaluate_core(m.layer, m.accel, m.mapping)
    no_drain = out.cycles.item() - out.drain_cycles.item()
    assert no_drain == pytest.approx(res.latency_cycles, rel=0.15)
    assert out.energy_pj.item() == pytest.approx(res.energy_pj, rel=0.15)


def test_codax_mappings_translate_into_complete_zigzag_orderings(loma_tpu):
    """The mapper's tight, divisor-only mappings are what ZigZag accepts: a dense layer whose K=1000
    does not divide the 32-wide array, and a resident conv whose DRAM level ZigZag keeps empty."""
    from codax.bench.zigzag_mirror import codax_layer
    from codax.hw.mapper import map_layer

    layer, res = loma_tpu
    accel = from_zigzag(layer, "tpu_like", res).accel
    fc = zb.ZigZagLayer("fc", N=1, G=1, K=1000, C=512, P=1, Q=1, R=1, S=1, op_type="Gemm")
    m = map_layer(codax_layer(fc), accel, "latency", constraints={"divisors_only": True}).mapping
    spatial, temporal = to_zigzag(m, accel)
    zb.FixedEvaluator(fc, "tpu_like", spatial).check_temporal(temporal)  # raises when incomplete
    assert zb.evaluate_fixed(fc, "tpu_like", spatial, temporal).latency_cycles > 0

    m = map_layer(
        codax_layer(layer), accel, "latency", constraints={"divisors_only": True, "resident": True}
    ).mapping
    assert not any(f > 1 for f in m.tiles.get("DRAM", {}).values())
    spatial, temporal = to_zigzag(m, accel)
    zz = zb.evaluate_fixed(layer, "tpu_like", spatial, temporal)
    # ZigZag's allocator, which fills the on-chip memories first, leaves DRAM without loops as well:
    # the DRAM boundary of the nest ZigZag evaluates is codax's
    assert all(levels[-1] == [] for levels in zz.temporal_per_level.values())


def test_zigzag_as_the_mappers_oracle(loma_tpu):
    """ZigZag re-ranking codax's best mappings: its pick is the best of the candidates by ZigZag's
    own evaluation, hence never worse on ZigZag's model than codax's mapping alone."""
    from codax.bench.zigzag_mirror import codax_layer
    from codax.hw.mapper import map_layer

    layer, res = loma_tpu
    accel = from_zigzag(layer, "tpu_like", res).accel
    assert accel.dram.stream_weights  # the mirror streams weights, as ZigZag does
    seen: list[float] = []

    def zigzag(lay, mappings):
        for m in mappings:
            seen.append(zb.evaluate_fixed(layer, "tpu_like", *to_zigzag(m, accel)).latency_cycles)
        return seen[-len(mappings) :]

    constraints = {"divisors_only": True, "resident": True}
    alone = map_layer(codax_layer(layer), accel, "latency", constraints=constraints)
    picked = map_layer(
        codax_layer(layer), accel, "latency", constraints=constraints, oracle=zigzag, oracle_top=8
    )
    assert picked.oracle_evaluated == len(seen) == 8
    assert picked.oracle_score == min(seen)
    zz_alone = zb.evaluate_fixed(layer, "tpu_like", *to_zigzag(alone.mapping, accel)).latency_cycles
    assert seen[0] == zz_alone  # codax's own pick is the first candidate
    assert picked.oracle_score <= zz_alone
