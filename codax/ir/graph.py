"""A network as a DAG of accelerated layers and host ops, in execution order."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from codax.errors import ConfigError
from codax.ir.layer import Layer


@dataclass(frozen=True)
class HostOp:
    """A node that is not offloaded as a MAC layer: why, and what it computes."""

    name: str
    op_type: str  # the ONNX op type (Add, MaxPool, Concat, ...)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    placement: str = "host"  # host | vector (the accelerator's post-processing unit)
    reason: str = ""
    onnx_node: str = ""


@dataclass
class Graph:
    """Nodes keyed by name; an edge u -> v when v reads a tensor u writes.

    Insertion order is execution order."""

    name: str = "network"
    nodes: dict[str, Layer | HostOp] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def add(self, node: Layer | HostOp) -> None:
        if node.name in self.nodes:
            raise ConfigError(f"graph {self.name}: duplicate node name {node.name!r}")
        self.nodes[node.name] = node

    @property
    def layers(self) -> list[Layer]:
        return [n for n in self.nodes.values() if isinstance(n, Layer)]

    @property
    def host_ops(self) -> list[HostOp]:
        return [n for n in self.nodes.values() if isinstance(n, HostOp)]

    def dag(self) -> nx.DiGraph:
        g = nx.DiGraph()
        producer: dict[str, str] = {}
        for n in self.nodes.values():
            g.add_node(n.name, node=n)
            for t in n.outputs:
                producer[t] = n.name
        for n in self.nodes.values():
            for t in n.inputs:
                if t in producer and producer[t] != n.name:
                    g.add_edge(producer[t], n.name, tensor=t)
        return g

    def topological_order(self) -> list[str]:
        """Execution order: insertion order, checked to respect every data dependence."""
        g = self.dag()
        if not nx.is_directed_acyclic_graph(g):
            raise ConfigError(f"graph {self.name}: the node dependencies form a cycle")
        pos = {name: i for i, name in enumerate(self.nodes)}
        for u, v in g.edges:
            if pos[u] > pos[v]:
                return list(nx.lexicographical_topological_sort(g, key=pos.__getitem__))
        return list(self.nodes)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)
