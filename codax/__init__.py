"""codax: differentiable network-accelerator co-search and an HLS compiler built on TVM Relax."""

__version__ = "0.1.0"
