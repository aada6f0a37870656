"""PyTorch -> ONNX export, ONNX -> Relax import, and Relax/ONNX -> codax.ir.Graph extraction."""

from codax.frontend.export import export_torch
from codax.frontend.extract import extract_graph
from codax.frontend.importer import import_onnx
from codax.frontend.onnx_io import LoadedModel, WeightsMissingError, load_onnx

__all__ = ["LoadedModel", "WeightsMissingError", "export_torch", "extract_graph", "import_onnx", "load_onnx"]
