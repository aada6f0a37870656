"""Mapping search: the best legal mapping of a layer (or every layer of a graph) on an engine.

`map_layer` searches one layer ("fast": pruned seeding + local search, the default; or
"exhaustive": the whole declared space), `map_graph` a whole graph with one search per distinct
layer shape. Both score mappings in large batches through `codax.hw.cost_core`. An optional
`oracle` (another cost model) re-ranks the search's best few mappings.
"""

from codax.hw.mapper.api import GraphMapping, MapResult, Oracle, map_graph, map_layer
from codax.hw.mapper.constraints import Constraints
from codax.hw.mapper.naive import naive_mapping

__all__ = ["Constraints", "GraphMapping", "MapResult", "Oracle", "map_graph", "map_layer", "naive_mapping"]
