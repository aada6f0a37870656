"""`codax demo`: the main job end to end on the bundled default."""

from __future__ import annotations

from codax.hw import evaluate_network, load_accelerator
from codax.ir import Graph, conv2d, dense


def bundled_network() -> Graph:
    """A small CNN for 8x8 digits: the shapes the bundled co-search space produces."""
    g = Graph("digits-cnn")
    shapes = [("stem", 1, 16, 8, 1), ("b1", 16, 24, 8, 1), ("b2", 24, 32, 8, 2), ("b3", 32, 64, 4, 1)]
    prev = "input"
    for name, cin, cout, hw, stride in shapes:
        g.add(
            conv2d(
                name,
                c_in=cin,
                c_out=cout,
                hw=(hw, hw),
                stride=(stride, stride),
                pads=(1, 1, 1, 1),
                inputs=(prev,),
                outputs=(f"{name}_out",),
            )
        )
        prev = f"{name}_out"
    g.add(dense("fc", c_in=64 * 4 * 4, c_out=10, inputs=(prev,), outputs=("logits",)))
    return g


def _mapper():
    try:
        from codax.hw.mapper import map_graph
    except ImportError:  # before the mapper lands: the simplest legal mapping
        map_graph = None
    return map_graph


def run_demo(out_dir: str = "out/demo", quick: bool = False) -> int:
    accel = load_accelerator("zc706-int8")
    graph = bundled_network()
    map_graph = _mapper()
    if map_graph is not None:
        mappings = map_graph(graph, accel).mappings
    else:
        from codax.hw.mapper import naive_mapping

        mappings = {layer.name: naive_mapping(layer, accel) for layer in graph.layers}
    cost = evaluate_network(graph, accel, mappings)
    print(f"network {graph.name} on {accel.name} ({accel.description.strip().split(':')[0]})")
    print(f"{'layer':8} {'MACs':>10} {'cycles':>10} {'energy uJ':>10} {'util':>6}  mapping")
    for layer, lc in zip(graph.layers, cost.layers):
        print(
            f"{layer.name:8} {lc.macs:>10,} {lc.cycles:>10,.0f} {lc.energy_pj / 1e6:>10.3f} "
            f"{lc.utilization:>6.1%}  {mappings[layer.name].summary()}"
        )
    r = cost.resources
    print(
        f"total: {cost.macs:,} MACs, {cost.cycles:,.0f} cycles = {cost.latency_ms:.3f} ms, "
        f"{cost.fps:,.0f} FPS, {cost.energy_pj / 1e6:.2f} uJ; DSP {r.dsp:.0f}, BRAM18 {r.bram18:.0f}, "
        f"LUT {r.lut:,.0f}"
    )
    return 0
