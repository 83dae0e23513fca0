"""torch -> ONNX export, verification and bundle writing."""
