"""The one factory of ONNX Runtime sessions: every session the package opens (the runtime
backend, parity checks, the precision builds, calibration, profiling, plugin checks) gets
its `SessionOptions` here, so a setting is changed in one place.

Defaults: CPU provider, ONNX Runtime's own intra-op thread count, warnings silenced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

CPU = ("CPUExecutionProvider",)
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")  # onnxruntime.GraphOptimizationLevel, by name


def session_options(threads: int = 0, *, sequential: bool = False, priority_order: bool = False,
                    profile_prefix: str | None = None, optimization: str | None = None):
    """`onnxruntime.SessionOptions`: `threads` intra-op threads (0: ONNX Runtime's choice);
    `sequential`: one inter-op thread, sequential execution, every graph optimisation (the
    runtime's settings); `priority_order`: priority-based execution order;
    `profile_prefix`: ONNX Runtime's profiler on, its file under that prefix;
    `optimization`: the graph optimisation level by name (`OPTIMIZATION_LEVELS`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning: between runs the pipeline's other
    # threads (reading, stitching, PNG encoding) need those cores. PCARN-M-L1 x4 folder runs,
    # 2-core AMX Xeon: CSet14 1.67 -> 1.56 s, CSet5 0.347 -> 0.325 s.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if sequential:
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimization is not None:
        levels = dict(zip(OPTIMIZATION_LEVELS, ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED",
                                                "ORT_ENABLE_ALL")))
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[optimization])
    if priority_order:
        options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def inference_session(graph, *, threads: int = 0, providers: Sequence[str] = CPU, sequential: bool = False,
                      priority_order: bool = False, profile_prefix: str | None = None,
                      optimization: str | None = None):
    """An `onnxruntime.InferenceSession` for `graph` (an `onnx.ModelProto`, serialized bytes,
    or a path), with `session_options(...)` and `providers` in order of preference."""
    import onnxruntime as ort

    if hasattr(graph, "SerializeToString"):
        graph = graph.SerializeToString()
    elif isinstance(graph, Path):
        graph = str(graph)
    options = session_options(threads, sequential=sequential, priority_order=priority_order,
                              profile_prefix=profile_prefix, optimization=optimization)
    return ort.InferenceSession(graph, options, providers=list(providers))
