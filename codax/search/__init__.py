"""Differentiable network / bitwidth / accelerator co-search: spaces, supernet, cost relaxation,
trainer, derive and export. Entry point: `run_search(config, out_dir)`."""

from codax.search.config import DEFAULTS, PRESETS, SearchConfig, load_config
from codax.search.cosearch import CoSearch, SearchResult, run_search

__all__ = ["DEFAULTS", "PRESETS", "SearchConfig", "load_config", "CoSearch", "SearchResult", "run_search"]
