"""ONNX, INT8 and TensorRT export (installed as `edgeecg.export`; needs the `export` extra)."""
