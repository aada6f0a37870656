"""The mapper's public API: the best mapping of one layer, or of every layer of a graph."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from codax.errors import ConfigError, InfeasibleError
from codax.hw.evaluate import LayerCost, NetworkCost, evaluate_network, layer_cost
from codax.hw.mapper.batch import OBJECTIVES, Evaluator
from codax.hw.mapper.constraints import Constraints
from codax.hw.mapper.exhaustive import search_exhaustive
from codax.hw.mapper.fast import search_fast
from codax.hw.mapper.space import spatial_options
from codax.hw.mapper.tiling import LevelModel, reduced_spatial, smallest_fits, smallest_overflow
from codax.hw.precision import graph_at, layer_at
from codax.ir import DIMS, Accelerator, Graph, Layer, Mapping, save_mappings, validate_mapping

METHODS: tuple[str, ...] = ("fast", "exhaustive")
DEFAULT_BUDGET = 20000
_OPERAND_NAMES = {"W": "weight", "I": "input", "O": "output"}


# A second opinion on the search's front runners: (layer, candidate mappings, best first by codax's
# model) -> one score per candidate, lower is better, inf where the oracle rejects it.
Oracle = Callable[[Layer, list[Mapping]], Sequence[float]]
DEFAULT_ORACLE_TOP = 32


@dataclass
class MapResult:
    mapping: Mapping
    cost: LayerCost
    evaluated: int  # mappings scored by the cost model
    wall_s: float
    method: str
    oracle_evaluated: int = 0  # candidates scored by the oracle (0: no oracle)
    oracle_score: float | None = None  # the oracle's score of the returned mapping
    oracle_rank: int = 0  # the returned mapping's place in codax's ranking of the candidates (0 = best)


@dataclass
class GraphMapping:
    mappings: dict[str, Mapping]
    cost: NetworkCost
    evaluated: int
    wall_s: float
    searched: int = 0  # distinct (shape, engine) searches; the other layers reused a cached mapping
    results: dict[str, MapResult] = field(default_factory=dict, repr=False)

    def save(self, path) -> str:
        """Write mappings.yaml (readable with codax.ir.load_mappings)."""
        return save_mappings(self.mappings, path)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the cost model on one intra-op thread. The mapper's batches are small (hundreds of
    points) and, on a shared 2-core machine, torch's thread pool makes elementwise ops such as
    ceil up to 50x slower than one thread; the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _options(
    layer: Layer, accel: Accelerator, engine: str | None, model: LevelModel, constraints: Constraints
):
    """Spatial options of the dataflow; where a full unroll overflows a shared buffer even with the
    smallest tiles, the unroll is halved until it fits, so small buffers still get a mapping."""
    opts = constraints.spatial_options()
    if opts is not None:
        return opts
    out: list[dict] = []
    dataflow = spatial_options(layer, accel, engine)
    for sp, ok in zip(dataflow, smallest_fits(model, _rows(dataflow))):
        while not ok and sp:
            sp = reduced_spatial(sp)
            ok = bool(smallest_fits(model, _rows([sp]))[0])
        if sp not in out:
            out.append(sp)
    return out


def _sf(sp: dict, dim: str) -> int:
    f = 1
    for d, k in sp.values():
        if d == dim:
            f *= k
    return f


def _infeasible(layer: Layer, accel: Accelerator, model: LevelModel) -> InfeasibleError:
    lv, op, need, cap = smallest_overflow(model, np.ones(8))
    if lv < 0:  # the smallest tiles fit, yet nothing in the searched space did
        return InfeasibleError(
            f"layer {layer.name}: no legal mapping found on {accel.name} in the searched space; "
            "the smallest tiles fit, so relax the constraints or raise the budget"
        )
    name = model.level_names[lv]
    what = "+".join(_OPERAND_NAMES.get(o, o) for o in op.split("+"))
    if model.resident:
        return InfeasibleError(
            f"layer {layer.name} cannot stay resident on chip on {accel.name}: with the whole layer "
            f"at {name}, its {what} tile ({int(need):,} B) exceeds the buffer ({int(cap):,} B for {what}) "
            f"by {int(need - cap):,} B; drop the constraint 'resident' or enlarge {name}"
        )
    return InfeasibleError(
        f"layer {layer.name} has no legal mapping on {accel.name}: buffer {name} ({int(cap):,} B for "
        f"{what}) is too small for the smallest {what} tile ({int(need):,} B, all on-chip factors 1, no "
        f"unrolling) by {int(need - cap):,} B; enlarge {name} or lower the layer's precision"
    )


def map_layer(
    layer: Layer,
    accel: Accelerator,
    objective: str = "latency",
    engine: str | None = None,
    seed: int = 0,
    budget: int | None = None,
    constraints: Constraints | dict | None = None,
    method: str = "fast",
    oracle: Oracle | None = None,
    oracle_top: int = DEFAULT_ORACLE_TOP,
) -> MapResult:
    """The best legal mapping of `layer` on an engine of `accel` for `objective`.

    method "exhaustive" scores the whole declared space; "fast" (default) searches it with pruning
    and local search within `budget` evaluations (default 20,000), deterministically for a seed.
    constraints (optional): a `Constraints` or a dict of its fields (spatial, double_buffer,
    max_points, divisors_only, resident; see codax.hw.mapper.constraints); an unknown key is a
    ConfigError naming it.
    With `oracle` (another cost model: a peer's, measured or synthesized results), the `oracle_top`
    best distinct mappings the search scored are re-ranked by `oracle(layer, mappings)` and its best
    is returned (codax's order breaks ties); `cost` is still codax's cost of that mapping.
    A float layer on an accelerator without a float datapath is mapped and costed at the
    accelerator's precision (codax.hw.precision), as it would run there once quantized.
    Raises InfeasibleError naming the buffer too small for the smallest tile."""
    with single_thread():
        return _map_layer(
            layer, accel, objective, engine, seed, budget, constraints, method, oracle, oracle_top
        )


def _map_layer(
    layer: Layer,
    accel: Accelerator,
    objective: str = "latency",
    engine: str | None = None,
    seed: int = 0,
    budget: int | None = None,
    constraints: Constraints | dict | None = None,
    method: str = "fast",
    oracle: Oracle | None = None,
    oracle_top: int = DEFAULT_ORACLE_TOP,
) -> MapResult:
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ConfigError(f"mapper method {method!r} is not one of {METHODS}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r} is not one of {OBJECTIVES}")
    constraints = Constraints.of(constraints)
    layer = layer_at(layer, accel)  # a float layer on an integer accelerator: at its precision
    model = LevelModel(layer, accel, engine)
    model.exact_tiles = constraints.divisors_only
    model.double_buffering = constraints.double_buffer
    model.resident = constraints.resident
    options = _options(layer, accel, engine, model, constraints)
    feasible = [sp for sp, ok in zip(options, smallest_fits(model, _rows(options))) if ok]
    if not feasible:
        raise _infeasible(layer, accel, model)
    if oracle is not None and (not isinstance(oracle_top, int) or oracle_top < 1):
        raise ConfigError(f"oracle_top must be a positive int, got {oracle_top!r}")
    # keep twice the oracle's share: some front runners normalise to the same mapping
    keep = 2 * oracle_top if oracle is not None else 1
    ev = Evaluator(layer, accel, engine, objective, feasible, keep=keep)
    if method == "exhaustive":
        score, best = search_exhaustive(ev, model, constraints.max_points)
    else:
        score, best = search_fast(ev, model, seed, budget or DEFAULT_BUDGET)
    if ev.best is not None and ev.best.score <= score:
        # the best point the evaluator scored: the search's answer up to ties of equal score, and
        # the one whose cost-model outputs were kept
        score, best = ev.best.score, ev.best.point
    if best is None or not np.isfinite(score):
        raise _infeasible(layer, accel, model)
    if oracle is not None:
        return _oracle_pick(layer, accel, engine, ev, oracle, oracle_top, method, t0)
    mapping = ev.to_mapping(best).normalized(layer, accel.engine(engine))
    validate_mapping(layer, accel, mapping)  # a cheap safety net: the search builds legal points only
    # the winner's cost-model outputs were computed when it was scored: no second evaluation
    cost = layer_cost(layer, accel, mapping, ev.outputs_of(best))
    return MapResult(mapping, cost, ev.evaluated, time.perf_counter() - t0, method)


def _oracle_pick(layer, accel, engine, ev: Evaluator, oracle: Oracle, top: int, method: str, t0: float):
    """Re-rank the search's `top` best distinct mappings by the oracle; return its best."""
    eng = accel.engine(engine)
    candidates: list[tuple[Mapping, object]] = []
    seen: set[str] = set()
    for _, pt in ev.ranked():
        m = ev.to_mapping(pt).normalized(layer, eng)
        key = repr(m.to_dict())
        if key not in seen:
            seen.add(key)
            candidates.append((m, pt))
        if len(candidates) == top:
            break
    for m, _ in candidates:
        validate_mapping(layer, accel, m)
    scores = np.asarray(list(oracle(layer, [m for m, _ in candidates])), dtype=np.float64)
    if scores.shape != (len(candidates),):
        raise ConfigError(
            f"mapper oracle returned {scores.shape[0] if scores.ndim else 'a scalar'} scores for "
            f"{len(candidates)} candidate mappings of layer {layer.name}; it must return one per mapping"
        )
    scores = np.where(np.isnan(scores), np.inf, scores)
    pick = int(np.argmin(scores))  # first of equal scores: codax's own order breaks ties
    if not np.isfinite(scores[pick]):
        raise InfeasibleError(
            f"layer {layer.name}: the mapper oracle rejected all {len(candidates)} candidate mappings; "
            "check the oracle, or raise oracle_top"
        )
    mapping, pt = candidates[pick]
    cost = layer_cost(layer, accel, mapping, ev.outputs_of(pt))
    return MapResult(
        mapping,
        cost,
        ev.evaluated,
        time.perf_counter() - t0,
        method,
        oracle_evaluated=len(candidates),
        oracle_score=float(scores[pick]),
        oracle_rank=pick,
    )


def _rows(options: list[dict]) -> np.ndarray:
    """[n, 8] spatial factors of the options."""
    return np.array([[float(_sf(sp, d)) for d in DIMS] for sp in options]).reshape(len(options), len(DIMS))


def map_graph(
    graph: Graph,
    accel: Accelerator,
    objective: str = "latency",
    seed: int = 0,
    method: str = "fast",
    engine_of: dict[str, str] | Callable[[Layer], str | None] | None = None,
    budget: int | None = None,
    oracle: Oracle | None = None,
    oracle_top: int = DEFAULT_ORACLE_TOP,
) -> GraphMapping:
    """Map every layer of `graph`; layers of equal shape (Layer.shape_key) on the same engine are
    searched once and share the mapping (renamed per layer). Returns per-layer mappings and the
    network totals of `evaluate_network`. `oracle` re-ranks each search's best mappings, as in
    `map_layer`."""
    with single_thread():
        return _map_graph(graph, accel, objective, seed, method, engine_of, budget, oracle, oracle_top)


def _map_graph(graph, accel, objective, seed, method, engine_of, budget, oracle, oracle_top) -> GraphMapping:
    t0 = time.perf_counter()
    graph = graph_at(graph, accel)  # float layers on an integer accelerator: at its precision
    cache: dict[tuple, MapResult] = {}
    mappings: dict[str, Mapping] = {}
    results: dict[str, MapResult] = {}
    evaluated = 0
    for layer in graph.layers:
        if callable(engine_of):
            eng = engine_of(layer)
        else:
            eng = (engine_of or {}).get(layer.name)
        key = (layer.shape_key(), eng)
        if key not in cache:
            cache[key] = _map_layer(
                layer, accel, objective, eng, seed, budget, None, method, oracle, oracle_top
            )
            evaluated += cache[key].evaluated
        res = cache[key]
        mappings[layer.name] = replace(res.mapping, layer=layer.name)
        results[layer.name] = res
    cost = evaluate_network(graph, accel, mappings)
    return GraphMapping(mappings, cost, evaluated, time.perf_counter() - t0, len(cache), results)
