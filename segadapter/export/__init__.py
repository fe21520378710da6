"""Deployment files: ONNX export (onnx_graph.py) and static int8 with ONNX Runtime's quantization
tools (int8.py in one call; quantize.py, with the fp32-node plan in fp32_nodes.py and the
calibration inputs in calibration.py). The files run through
`segadapter.inference.onnx_network.OnnxNetwork`."""
from .onnx_graph import METADATA_KEY, check_onnx, export_onnx, model_metadata, read_metadata, write_metadata

__all__ = ["METADATA_KEY", "check_onnx", "export_onnx", "model_metadata", "read_metadata", "write_metadata"]
