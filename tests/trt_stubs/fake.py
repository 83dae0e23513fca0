"""A simulated GPU, TensorRT and cuda-python runtime that only speak the recorded API.

`FakeTensorRT` and `FakeCudart` are module stand-ins built from
tests/data/tensorrt_11_4_api.json. Every attribute the code under test touches and every
call it makes is checked against that record (names, enum members, property
writability, argument counts and keyword names): a removed API such as
`trt.BuilderFlag.FP16` or a wrong keyword raises `ApiViolation` and is also logged in
`violations` (so a broad `except` cannot hide it).

Behind the checks sits a small simulation:
- "device memory" and "pinned host memory" are real host buffers handed out at their
  addresses; `cudaMemcpyAsync` checks that both ends lie inside a live allocation of the
  right kind (device vs pinned host) for its direction, then copies;
- a "plan" is JSON naming the ONNX graph, its profile shapes and I/O dtype;
  `execute_async_v3` runs that graph with ONNX Runtime on the inputs read from "device"
  memory and writes the output back there. So a TensorRT session over the fake computes
  exactly what the ONNX Runtime session computes: any plumbing error shows as a mismatch.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np

from trt_stubs import api

TRT = "tensorrt"
RT = "cuda.bindings.runtime"


class ApiViolation(AttributeError):
    """The code used a name or a call that the real API does not have."""


class _Checker:
    def __init__(self):
        self.violations: list[str] = []

    def fail(self, message: str):
        self.violations.append(message)
        raise ApiViolation(message)


# -- enums -----------------------------------------------------------------------------------
class FakeEnumValue:
    def __init__(self, enum: str, name: str, value: int):
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other) -> bool:
        if isinstance(other, FakeEnumValue):
            return (self.enum, self.name) == (other.enum, other.name)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"<{self.enum.rsplit('.', 1)[-1]}.{self.name}: {self.value}>"


class FakeEnum:
    def __init__(self, checker: _Checker, qual: str, values: dict[str, int] | None = None):
        record = api.objects().get(qual)
        assert record and record["kind"] == "enum", qual
        self._checker, self._qual = checker, qual
        # members without a given value get ones that cannot collide with the given ones
        offset = 100_000 if values else 0
        values = values or {}
        self.__members__ = {n: FakeEnumValue(qual, n, values.get(n, offset + i))
                            for i, n in enumerate(record["values"])}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.__members__[name]
        except KeyError:
            self._checker.fail(f"{self._qual} has no member {name} in the recorded API")

    def __call__(self, value: int):
        for member in self.__members__.values():
            if member.value == value:
                return member
        return FakeEnumValue(self._qual, f"<{value}>", value)


# -- checked proxies -------------------------------------------------------------------------
def _unwrap(value):
    return value._sim if isinstance(value, Checked) else value


class CheckedCallable:
    def __init__(self, checker: _Checker, qual: str, fn, unbound_self: bool = False):
        self._checker, self._qual, self._fn = checker, qual, fn

    def __call__(self, *args, **kwargs):
        why = api.check_call(self._qual, len(args), list(kwargs))
        if why:
            self._checker.fail(why)
        result = self._fn(*map(_unwrap, args), **{k: _unwrap(v) for k, v in kwargs.items()})
        return wrap(self._checker, result, _return_type(self._qual))


def _return_type(qual: str) -> str:
    sigs = api.signatures(qual) or []
    return sigs[0]["returns"] if sigs else ""


class Sim:
    """Base of simulated TensorRT objects (wrapped in `Checked` when handed out)."""


def wrap(checker: _Checker, value, declared: str):
    if isinstance(value, Sim):
        qual = getattr(value, "QUAL", None) or declared
        record = api.objects().get(qual)
        if record is None or record["kind"] != "class":
            checker.fail(f"simulated object for unrecorded type {qual}")
        return Checked(checker, qual, value)
    return value


class Checked:
    """An instance of recorded class `qual`, backed by a simulation object."""

    def __init__(self, checker: _Checker, qual: str, sim):
        object.__setattr__(self, "_checker", checker)
        object.__setattr__(self, "_qual", qual)
        object.__setattr__(self, "_sim", sim)

    def _record(self) -> dict:
        return api.objects()[self._qual]

    def __getattr__(self, name: str):
        record = self._record()
        known = set(record["members"]) | set(record["methods"]) | set(record.get("properties", {}))
        if name not in known:
            self._checker.fail(f"{self._qual} has no attribute '{name}' in the recorded API")
        if not hasattr(self._sim, name):
            raise NotImplementedError(f"the simulation of {self._qual} lacks '{name}' (extend tests/trt_stubs/fake.py)")
        value = getattr(self._sim, name)
        if name in record["methods"] and callable(value):
            return CheckedCallable(self._checker, f"{self._qual}.{name}", value)
        prop = record.get("properties", {}).get(name)
        return wrap(self._checker, value, prop["type"] if prop else "")

    def __setattr__(self, name: str, value) -> None:
        prop = self._record().get("properties", {}).get(name)
        if prop is None or not prop["writable"]:
            self._checker.fail(f"{self._qual}.{name} is not a writable property in the recorded API")
        setattr(self._sim, name, value)

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return str(self._sim)


class CheckedClass:
    """A recorded class: calling it checks the constructor; class attributes are checked."""

    def __init__(self, checker: _Checker, qual: str, cls):
        self._checker, self._qual, self._cls = checker, qual, cls

    def __call__(self, *args, **kwargs):
        return CheckedCallable(self._checker, f"{self._qual}.__init__", self._make)(*args, **kwargs)

    def _make(self, *args, **kwargs):
        return Checked(self._checker, self._qual, self._cls(*args, **kwargs))

    def __getattr__(self, name: str):
        record = api.objects()[self._qual]
        if name not in record["members"]:
            self._checker.fail(f"{self._qual} has no attribute '{name}' in the recorded API")
        return getattr(self._cls, name)


class FakeModule:
    """A recorded module: only its recorded names exist; `attrs` simulates some of them."""

    def __init__(self, checker: _Checker, prefix: str, attrs: dict[str, Any]):
        self._checker, self._prefix, self._attrs = checker, prefix, attrs

    def __getattr__(self, name: str):
        if name.startswith("__") and name not in ("__version__",):
            raise AttributeError(name)
        members = api.objects()[self._prefix]["members"]
        if name not in members:
            self._checker.fail(f"{self._prefix} has no attribute '{name}' in the recorded API")
        if name not in self._attrs:
            raise NotImplementedError(f"the simulated {self._prefix} lacks '{name}' (extend tests/trt_stubs/fake.py)")
        value = self._attrs[name]
        record = api.objects().get(f"{self._prefix}.{name}", {})
        if record.get("kind") == "function" and callable(value):
            return CheckedCallable(self._checker, f"{self._prefix}.{name}", value)
        return value


# -- the simulated GPU -----------------------------------------------------------------------
class FakeGpu:
    """Memory, streams and device properties shared by the fake cudart and TensorRT."""

    def __init__(self, name: str = "Simulated RTX", capability: tuple[int, int] = (8, 6),
                 memory: int = 24 << 30, driver_error: int = 0):
        self.name, self.capability, self.memory = name, capability, memory
        self.driver_error = driver_error  # 35: no driver, 100: no device
        self.allocations: dict[int, tuple[Any, str, int]] = {}  # address -> (buffer, kind, size)
        self.streams: set[int] = set()
        self.copies: list[tuple[str, int]] = []  # (direction, bytes)
        self.mallocs = 0
        self.current_device = 0

    def alloc(self, kind: str, size: int) -> int:
        buffer = ctypes.create_string_buffer(max(1, size))
        address = ctypes.addressof(buffer)
        self.allocations[address] = (buffer, kind, size)
        if kind == "device":
            self.mallocs += 1
        return address

    def free(self, address: int, kind: str) -> None:
        entry = self.allocations.pop(int(address), None)
        assert entry is not None, f"free of an unknown {kind} pointer {address:#x}"
        assert entry[1] == kind, f"{kind} free of a {entry[1]} allocation"

    def span(self, address: int, size: int, kind: str) -> None:
        for base, (_, k, n) in self.allocations.items():
            if base <= address and address + size <= base + n:
                assert k == kind, f"a {kind} copy end lies in {k} memory"
                return
        raise AssertionError(f"{size} bytes at {address:#x} are not inside one live {kind} allocation")

    def read(self, address: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        self.span(address, size, "device")
        raw = (ctypes.c_ubyte * size).from_address(address)
        return np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape).copy()

    def write(self, address: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self.span(address, array.nbytes, "device")
        ctypes.memmove(address, array.ctypes.data, array.nbytes)

    def live(self, kind: str) -> int:
        return sum(1 for _, k, _ in self.allocations.values() if k == kind)


class FakeStream:
    _next = 0x5000

    def __init__(self):
        FakeStream._next += 16
        self.handle = FakeStream._next

    def __int__(self) -> int:
        return self.handle


class FakeDeviceProp:
    def __init__(self, gpu: FakeGpu):
        self.name = gpu.name.encode() + b"\0" * 8
        self.major, self.minor = gpu.capability
        self.totalGlobalMem = gpu.memory


def make_cudart(gpu: FakeGpu, checker: _Checker | None = None) -> FakeModule:
    checker = checker or _Checker()
    err_enum = FakeEnum(checker, f"{RT}.cudaError_t",
                        {"cudaSuccess": 0, "cudaErrorInsufficientDriver": 35, "cudaErrorNoDevice": 100})
    ok = err_enum.cudaSuccess
    kind_enum = FakeEnum(checker, f"{RT}.cudaMemcpyKind",
                         {"cudaMemcpyHostToHost": 0, "cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2,
                          "cudaMemcpyDeviceToDevice": 3, "cudaMemcpyDefault": 4})

    def error(code: int):
        return err_enum(code)

    def cudaGetDeviceCount():
        if gpu.driver_error:
            return error(gpu.driver_error), 0
        return ok, 1

    def cudaGetDeviceProperties(device):
        assert device == 0
        return ok, FakeDeviceProp(gpu)

    def cudaMemcpyAsync(dst, src, count, kind, stream):
        assert int(stream) in gpu.streams, "copy on an unknown or destroyed stream"
        direction = {"cudaMemcpyHostToDevice": ("device", "host"), "cudaMemcpyDeviceToHost": ("host", "device")}
        assert kind.name in direction, f"unexpected copy kind {kind}"
        to, frm = direction[kind.name]
        gpu.span(int(dst), count, to)
        gpu.span(int(src), count, frm)
        ctypes.memmove(int(dst), int(src), count)
        gpu.copies.append((kind.name, count))
        return (ok,)

    def cudaStreamCreateWithFlags(flags):
        stream = FakeStream()
        gpu.streams.add(int(stream))
        return ok, stream

    def cudaStreamDestroy(stream):
        gpu.streams.remove(int(stream))
        return (ok,)

    def cudaStreamSynchronize(stream):
        assert int(stream) in gpu.streams
        return (ok,)

    def cudaGetErrorString(err):
        texts = {35: b"CUDA driver version is insufficient for CUDA runtime version",
                 100: b"no CUDA-capable device is detected"}
        return ok, texts.get(int(err), b"unknown error")

    attrs = {
        "cudaError_t": err_enum,
        "cudaMemcpyKind": kind_enum,
        "cudaStreamNonBlocking": 1,
        "cudaGetDeviceCount": cudaGetDeviceCount,
        "cudaGetDeviceProperties": cudaGetDeviceProperties,
        "cudaDriverGetVersion": lambda: (ok, 13000 if not gpu.driver_error else 0),
        "cudaRuntimeGetVersion": lambda: (ok, 13040),
        "cudaSetDevice": lambda device: (ok,),
        "cudaMalloc": lambda size: (ok, gpu.alloc("device", size)),
        "cudaFree": lambda ptr: (gpu.free(ptr, "device"), (ok,))[1],
        "cudaMallocHost": lambda size: (ok, gpu.alloc("host", size)),
        "cudaFreeHost": lambda ptr: (gpu.free(ptr, "host"), (ok,))[1],
        "cudaMemcpyAsync": cudaMemcpyAsync,
        "cudaStreamCreateWithFlags": cudaStreamCreateWithFlags,
        "cudaStreamSynchronize": cudaStreamSynchronize,
        "cudaStreamDestroy": cudaStreamDestroy,
        "cudaGetErrorString": cudaGetErrorString,
    }
    module = FakeModule(checker, RT, attrs)
    module.checker = checker
    return module


# -- simulated TensorRT ------------------------------------------------------------------------
class SimState:
    """Knobs and records of one fake TensorRT."""

    def __init__(self, gpu: FakeGpu, output_scale: int, io_dtype: str = "float32"):
        self.gpu = gpu
        self.output_scale = output_scale
        self.io_dtype = io_dtype
        self.parse_errors: list[str] = []
        self.fail_build = False
        self.builds: list[dict] = []  # one record per build_serialized_network
        self.opt_levels: list[int] = []
        self.executions = 0
        self.sessions: dict[str, Any] = {}


class SimDims(tuple):
    pass


class SimHostMemory(bytes):
    """IHostMemory: a buffer (the real one supports the buffer protocol)."""

    @property
    def nbytes(self) -> int:
        return len(self)


def make_tensorrt(state: SimState, checker: _Checker | None = None, version: str = "11.4.0.106") -> FakeModule:
    checker = checker or _Checker()
    severity = FakeEnum(checker, f"{TRT}.ILogger.Severity",
                        {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})
    datatype = FakeEnum(checker, f"{TRT}.DataType")
    io_mode = FakeEnum(checker, f"{TRT}.TensorIOMode")
    creation = FakeEnum(checker, f"{TRT}.NetworkDefinitionCreationFlag")
    numpy_of = {datatype.FLOAT: np.float32, datatype.HALF: np.float16}
    trt_of = {"float32": datatype.FLOAT, "float16": datatype.HALF}

    class ILogger:
        Severity = severity

        def __init__(self):
            pass

        def log(self, level, msg):
            pass

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (severity.INTERNAL_ERROR, severity.ERROR, severity.WARNING,
                                                         severity.INFO, severity.VERBOSE)

        def __init__(self, min_severity=None):
            super().__init__()

    class Tensor(Sim):
        QUAL = f"{TRT}.ITensor"

        def __init__(self, name):
            self.name = name

    class Network(Sim):
        QUAL = f"{TRT}.INetworkDefinition"

        def __init__(self, flags):
            self.flags = flags
            self.inputs: list[str] = []
            self.graph: str | None = None

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, index):
            return Tensor(self.inputs[index])

    class ParserError(Sim):
        QUAL = f"{TRT}.ParserError"

        def __init__(self, text):
            self.text = text

        def desc(self):
            return self.text

        def __str__(self):
            return self.text

    class OnnxParser(Sim):
        def __init__(self, network, logger):
            assert isinstance(network, Network)
            self.network = network

        def parse_from_file(self, model):
            import onnx

            graph = onnx.load(model, load_external_data=False)
            inits = {i.name for i in graph.graph.initializer}
            self.network.inputs = [i.name for i in graph.graph.input if i.name not in inits]
            self.network.graph = model
            return not state.parse_errors

        @property
        def num_errors(self):
            return len(state.parse_errors)

        def get_error(self, index):
            return ParserError(state.parse_errors[index])

    class Profile(Sim):
        QUAL = f"{TRT}.IOptimizationProfile"

        def __init__(self):
            self.shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's parameter names
            self.shapes[input] = [list(min), list(opt), list(max)]

    class TimingCache(Sim):
        QUAL = f"{TRT}.ITimingCache"

        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return SimHostMemory(b"timing-cache:" + str(len(state.builds)).encode())

    class Config(Sim):
        QUAL = f"{TRT}.IBuilderConfig"

        def __init__(self):
            self.builder_optimization_level = 3
            self.profiles = []
            self.cache = None

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            return TimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder(Sim):
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            state.opt_levels.append(config.builder_optimization_level)
            assert len(config.profiles) == 1
            shapes = config.profiles[0].shapes
            assert set(shapes) == set(network.inputs), "every input needs a profile shape"
            record = {"magic": "sim-plan", "graph": network.graph, "shapes": shapes, "inputs": network.inputs,
                      "io_dtype": state.io_dtype, "output": "output", "flags": int(network.flags),
                      "timing_cache": config.cache.data.decode(errors="replace") if config.cache else None}
            state.builds.append(record)
            if state.fail_build:
                return None
            return SimHostMemory(json.dumps(record).encode())

    class Context(Sim):
        QUAL = f"{TRT}.IExecutionContext"

        def __init__(self, engine):
            self.engine = engine
            self.shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name, shape):
            low, _, high = self.engine.plan["shapes"][name]
            shape = tuple(int(d) for d in shape)
            if len(shape) != len(low) or any(not lo <= d <= hi for lo, d, hi in zip(low, shape, high)):
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            if name in self.shapes:
                return SimDims(self.shapes[name])
            n, _, h, w = self.shapes[self.engine.plan["inputs"][0]]
            s = state.output_scale
            return SimDims((n, 3, h * s, w * s))

        def set_tensor_address(self, name, memory):
            self.addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle):
            assert int(stream_handle) in state.gpu.streams, "execute on an unknown stream"
            plan = self.engine.plan
            dtype = np.dtype(plan["io_dtype"])
            feeds = {}
            for name in plan["inputs"]:
                feeds[name] = state.gpu.read(self.addresses[name], self.shapes[name], dtype).astype(np.float32)
            session = state.sessions.get(plan["graph"])
            if session is None:
                import onnxruntime as ort

                session = state.sessions[plan["graph"]] = ort.InferenceSession(
                    plan["graph"], providers=["CPUExecutionProvider"])
            out = session.run(None, feeds)[0]
            assert out.shape == tuple(self.get_tensor_shape(plan["output"])), "output shape bookkeeping"
            state.gpu.write(self.addresses[plan["output"]], out.astype(dtype))
            state.executions += 1
            return True

    class Engine(Sim):
        QUAL = f"{TRT}.ICudaEngine"

        def __init__(self, plan):
            self.plan = plan

        @property
        def num_io_tensors(self):
            return len(self.plan["inputs"]) + 1

        def _names(self):
            return [*self.plan["inputs"], self.plan["output"]]

        def get_tensor_name(self, index):
            return self._names()[index]

        def get_tensor_mode(self, name):
            return io_mode.INPUT if name in self.plan["inputs"] else io_mode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt_of[self.plan["io_dtype"]]

        def get_tensor_profile_shape(self, name, profile_index):
            assert profile_index == 0
            return [SimDims(s) for s in self.plan["shapes"][name]]

        def create_execution_context(self, strategy=None):
            return Context(self)

    class Runtime(Sim):
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            try:
                plan = json.loads(bytes(serialized_engine))
            except ValueError:
                return None
            return Engine(plan) if plan.get("magic") == "sim-plan" else None

    def nptype(trt_type):
        return numpy_of[trt_type]

    attrs = {
        "__version__": version,
        "ILogger": ILogger,
        "Logger": CheckedClass(checker, f"{TRT}.Logger", Logger),
        "Builder": CheckedClass(checker, f"{TRT}.Builder", Builder),
        "Runtime": CheckedClass(checker, f"{TRT}.Runtime", Runtime),
        "OnnxParser": CheckedClass(checker, f"{TRT}.OnnxParser", OnnxParser),
        "Dims": CheckedClass(checker, f"{TRT}.Dims", lambda shape=(): SimDims(shape)),
        "DataType": datatype,
        "TensorIOMode": io_mode,
        "NetworkDefinitionCreationFlag": creation,
        "BuilderFlag": FakeEnum(checker, f"{TRT}.BuilderFlag"),
        "MemoryPoolType": FakeEnum(checker, f"{TRT}.MemoryPoolType"),
        "float32": datatype.FLOAT,
        "float16": datatype.HALF,
        "nptype": nptype,
    }
    module = FakeModule(checker, TRT, attrs)
    module.checker = checker
    module.state = state
    return module


class FakeMachine:
    """A GPU with TensorRT and cuda-python, all simulated, sharing one API checker."""

    def __init__(self, output_scale: int, capability: tuple[int, int] = (8, 6), io_dtype: str = "float32",
                 version: str = "11.4.0.106", driver_error: int = 0):
        self.checker = _Checker()
        self.gpu = FakeGpu(capability=capability, driver_error=driver_error)
        self.state = SimState(self.gpu, output_scale, io_dtype)
        self.trt = make_tensorrt(self.state, self.checker, version)
        self.cudart = make_cudart(self.gpu, self.checker)

    @property
    def violations(self) -> list[str]:
        return self.checker.violations

    def install(self, monkeypatch) -> "FakeMachine":
        """Make srexport's lazy imports return the fakes (for this test only)."""
        from srexport import lazy

        monkeypatch.setattr(lazy, "_cache", {"tensorrt": self.trt, "cudart": self.cudart})
        return self


def plan_record(path: Path) -> dict:
    return json.loads(Path(path).read_bytes())


def installed_machine(monkeypatch, tmp_path: Path, **options):
    """Fixture body: a `FakeMachine` (x2 output unless `options` say otherwise) installed for
    one test, with its own user engine cache; the test fails on any API violation."""
    monkeypatch.setenv("SREXPORT_CACHE", str(tmp_path / "user-cache"))
    fake = FakeMachine(**{"output_scale": 2, **options}).install(monkeypatch)
    yield fake
    assert fake.violations == []
