"""Mapping search: the best legal mapping of a layer (or every layer of a graph) on an engine."""

from codax.hw.mapper.naive import naive_mapping

__all__ = ["naive_mapping"]
