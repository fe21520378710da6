"""Deployment files: ONNX export (onnx_graph.py). The exported file runs through
`segadapter.inference.onnx_network.OnnxNetwork`."""
from .onnx_graph import METADATA_KEY, check_onnx, export_onnx, model_metadata, read_metadata, write_metadata

__all__ = ["METADATA_KEY", "check_onnx", "export_onnx", "model_metadata", "read_metadata", "write_metadata"]
