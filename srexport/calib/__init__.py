"""Reduced precision: calibration patches, FP16 conversion, INT8 QDQ quantization, accuracy."""
