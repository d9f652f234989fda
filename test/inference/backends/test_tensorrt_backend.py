"""TensorRT backend: everything that runs without a GPU, plus GPU tests (skipped here).

CPU: export with stride-constrained dynamic dims at several sizes (the ONNX path's export),
the static per-size engine export, the per-version precision arguments, SGEM staying FP32
in the exported half graph as Torch-TensorRT decomposes it, graph coverage counting, the
load-or-rebuild decision with mocked compile/save/load (a failed save, a cache shared by
two GPUs), save arguments per torch_tensorrt signature, import failures, whole-program
CUDA graphs of built and loaded engines (CUDA faked), the tests' own skip rule.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import fx, nn

from irstd_ros.core.padding import padded_size
from irstd_ros.errors import BackendError
from irstd_ros.inference.backends import tensorrt as trt_backend
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.fingerprint import Fingerprint, save_fingerprint
from irstd_ros.inference.backends.graph_export import export_program
from irstd_ros.inference.backends.tensorrt import (
    EngineStore,
    graph_coverage,
    import_torch_tensorrt,
    precision_plan,
    prepare_model,
    save_engine,
)

EXPORT_SIZES = [(32, 48), (64, 64), (96, 160), (32, 32)]  # padded (H, W): >= 2 blocks of 16
EXPORT_ATOL = 1e-4  # exported vs eager logits (same float ops, reordered)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def exported(tiny_model):
    model, info = tiny_model
    return export_program(model, info.model.stride)


@pytest.mark.parametrize("size", EXPORT_SIZES)
def test_export_with_stride_dims_runs_at_every_size(exported, tiny_model, size):
    model, _ = tiny_model
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), atol=EXPORT_ATOL, rtol=0)


def test_exported_dims_are_multiples_of_the_stride(exported):
    bounds = {str(k): v for k, v in exported.range_constraints.items()}
    derived = [v for k, v in bounds.items() if k.startswith("16*")]
    assert len(derived) == 2, bounds
    assert all(int(v.lower) == 32 for v in derived)  # MIN_BLOCKS = 2 blocks of 16


def test_pad_to_min_only_pads_small_inputs():
    x = torch.randn(1, 1, 16, 48)
    y = trt_backend.pad_to_min(x, (32, 32))
    assert y.shape[-2:] == (32, 48) and torch.equal(y[..., :16, :], x)
    assert trt_backend.pad_to_min(y, (32, 32)) is y


def test_export_with_free_dims_fails_on_the_unet(tiny_model):
    model, _ = tiny_model
    free = ({2: torch.export.Dim("h"), 3: torch.export.Dim("w")},)
    with pytest.raises(Exception):  # noqa: B017 - torch.export's constraint error types vary
        torch.export.export(model, (torch.randn(1, 1, 64, 64),), dynamic_shapes=free)


FP16_VERSIONS = ["2.8.0+cu126", "2.9.0", "2.10.0.dev20251101+cu130", "2.12.1", "2.13.0", "2.14.0"]  # 2.8: JetPack 6


@pytest.mark.parametrize("version", FP16_VERSIONS)
def test_fp16_is_a_strongly_typed_half_model_on_every_version(version):
    """2.8/2.9 asked for FP16 with ``enabled_precisions`` (weak typing) and kept the SGEM
    attention out of TensorRT with ``torch_executed_ops``, which missed the decomposed L2
    norm (next test): every version now gets the half model with explicit casts."""
    plan = precision_plan("fp16", version)
    assert plan.model_dtype == torch.float16
    assert plan.compile_kwargs == {"use_explicit_typing": True}  # never with enabled_precisions
    assert "inside TensorRT" in plan.sgem


def test_fp32_arguments_and_bad_precision():
    assert precision_plan("fp32", "2.8.0").compile_kwargs == {"enabled_precisions": {torch.float32}}
    assert precision_plan("fp32", "2.13.0").compile_kwargs == {"use_explicit_typing": True}
    with pytest.raises(BackendError, match="valid: fp32, fp16"):
        precision_plan("int8", "2.13.0")
    with pytest.raises(BackendError, match="cannot parse"):
        precision_plan("fp16", "nightly")


def _op_nodes(program: torch.export.ExportedProgram) -> list[fx.Node]:
    return [n for n in program.graph.nodes if n.op == "call_function"]


aten = torch.ops.aten


def trt_decompositions() -> object:
    """The decomposition table Torch-TensorRT lowers an ExportedProgram with (before it
    partitions and applies ``torch_executed_ops``): its own where it is installed, else a
    faithful stand-in: PyTorch's default table plus the ops Torch-TensorRT decomposes on top
    (``torch_enabled_decompositions`` in dynamo/lowering/_decomposition_groups.py lists
    ``aten.linalg_vector_norm`` among its "non-default convenience decompositions")."""
    try:
        from torch_tensorrt.dynamo.lowering import get_decompositions
    except Exception:  # noqa: BLE001 - not installed (here), or no driver
        table = torch.export.default_decompositions()
        for op, fn in torch._decomp.get_decompositions([aten.linalg_vector_norm]).items():
            table[op] = fn
        return table
    return get_decompositions()


SHAPE_OPS = ("view", "expand", "permute", "transpose", "_assert_tensor_metadata", "getitem", "_to_copy")


def _in_sgem(node: fx.Node) -> bool:
    paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    return any(p == "sgem" or p.startswith("sgem.") for p in paths)


@pytest.mark.parametrize("version", ["2.8.0+cu126", "2.9.0", "2.13.0"])
def test_sgem_runs_fp32_in_the_graph_torch_tensorrt_builds(tiny_model, version):
    """The SGEM (its L2 norm above all: a sum of squares over the ~20k pixels of a 640x512
    frame overflows FP16) must compute in FP32 in the graph TensorRT gets, i.e. after
    Torch-TensorRT's decompositions: for every op of the module either the network is
    strongly typed and the op is FP32, or the op is kept out of TensorRT. 2.8/2.9 listed
    ``aten.linalg_vector_norm`` in ``torch_executed_ops``; it is decomposed first (into
    pow / sum / pow), so the exclusion matched nothing and the sum ran in an FP16 engine."""
    model, info = tiny_model
    plan = precision_plan("fp16", version)
    prepared = prepare_model(model, plan, CPU)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched
    program = torch.export.export(prepared, (torch.zeros(1, 1, 64, 64, dtype=plan.model_dtype),))
    nodes = _op_nodes(program.run_decompositions(trt_decompositions()))
    assert not any(n.target == aten.linalg_vector_norm.default for n in nodes)  # decomposed
    strongly_typed = plan.compile_kwargs.get("use_explicit_typing") is True
    kept_out = set(plan.compile_kwargs.get("torch_executed_ops", ()))
    computing = [n for n in nodes if _in_sgem(n) and isinstance(n.meta.get("val"), torch.Tensor)
                 and not any(mark in str(n.target) for mark in SHAPE_OPS)]
    reductions = [n for n in computing if n.target == aten.sum.dim_IntList]
    assert len(reductions) == 2, [str(n.target) for n in computing]  # the norms of Q and K
    for node in computing:
        fp32 = (strongly_typed and node.meta["val"].dtype == torch.float32) or node.target in kept_out
        assert fp32, (version, str(node.target), node.meta["val"].dtype, plan.compile_kwargs)
    if strongly_typed:  # and the rest of the network is FP16, the SGEM between explicit casts
        outside = {n.meta["val"].dtype for n in nodes if not _in_sgem(n) and n.target == aten.convolution.default}
        assert outside == {torch.float16}
        assert any(n.target == aten._to_copy.default and _in_sgem(n) for n in nodes)


class FakeTorchTensorRTModule(nn.Module):
    def forward(self, x):
        return x


def test_graph_coverage_of_a_compiled_graph_module():
    root = nn.Module()
    root.add_module("_run_on_acc_0", FakeTorchTensorRTModule())
    fallback = fx.symbolic_trace(nn.Softmax(dim=-1))
    root.add_module("_run_on_gpu_1", fallback)
    root.add_module("_run_on_acc_2", FakeTorchTensorRTModule())
    graph = fx.Graph()
    x = graph.placeholder("x")
    a = graph.call_module("_run_on_acc_0", (x,))
    b = graph.call_module("_run_on_gpu_1", (a,))
    c = graph.call_module("_run_on_acc_2", (b,))
    graph.output(c)
    cov = graph_coverage(fx.GraphModule(root, graph))
    assert cov["trt_engines"] == 2
    assert cov["torch_subgraphs"] == 1
    assert cov["fallback_ops"] == 1 and "softmax" in next(iter(cov["fallback_op_types"]))


def test_graph_coverage_of_a_loaded_program():
    def execute_engine(x):  # stands for torch.ops.tensorrt.execute_engine
        return x

    graph = fx.Graph()
    x = graph.placeholder("x")
    y = graph.call_function(execute_engine, (x,))
    z = graph.call_function(torch.ops.aten._softmax.default, (y, -1, False))
    w = graph.call_function(execute_engine, (z,))
    graph.output(w)
    cov = graph_coverage(fx.GraphModule(nn.Module(), graph))
    assert cov["trt_engines"] == 2
    assert cov["fallback_op_types"] == {"aten._softmax.default": 1}


class Calls:
    def __init__(self):
        self.build = self.save = self.load = 0


def _store(tmp_path, calls: Calls, load_fails: bool = False, save_fails: bool = False) -> EngineStore:
    def build():
        calls.build += 1
        return nn.Identity()

    def save(module, path):
        calls.save += 1
        if save_fails:
            raise OSError(30, "Read-only file system", str(path))
        path.write_bytes(b"engine")

    def load(path):
        calls.load += 1
        if load_fails:
            raise RuntimeError("engine built by another TensorRT")
        return nn.Identity()

    return EngineStore(tmp_path / "m.ep", build, save, load)


def _fp(**changes) -> Fingerprint:
    base = dict(backend="tensorrt", precision="fp16", input_shape=(1, 1, 64, 64),
                shape_range=((16, 16), (64, 64)), weights_sha256="0" * 64, recipe="r",
                versions={"torch_tensorrt": "2.13.0"}, device={"compute_capability": "9.0"})
    base.update(changes)
    return Fingerprint(**base)


def test_missing_engine_is_built_then_loaded(tmp_path):
    calls = Calls()
    _, origin, cached = _store(tmp_path, calls).get(_fp())
    assert (calls.build, calls.save, calls.load) == (1, 1, 0) and origin.startswith("built") and cached
    _, origin, cached = _store(tmp_path, calls).get(_fp())
    assert (calls.build, calls.load) == (1, 1) and origin == "loaded" and cached


def test_fingerprint_mismatch_triggers_rebuild(tmp_path):
    calls = Calls()
    (tmp_path / "m.ep").write_bytes(b"old engine")
    save_fingerprint(tmp_path / "m.ep", _fp(versions={"torch_tensorrt": "2.8.0"}))
    _, origin, _ = _store(tmp_path, calls).get(_fp())
    assert (calls.build, calls.save, calls.load) == (1, 1, 0)
    assert "versions.torch_tensorrt: 2.8.0 -> 2.13.0" in origin


def test_unloadable_engine_is_rebuilt(tmp_path):
    calls = Calls()
    (tmp_path / "m.ep").write_bytes(b"engine")
    save_fingerprint(tmp_path / "m.ep", _fp())
    _, origin, _ = _store(tmp_path, calls, load_fails=True).get(_fp())
    assert (calls.load, calls.build) == (1, 1) and "loading" in origin


def test_a_failed_save_keeps_the_built_engine_and_warns_once(tmp_path, caplog):
    """A save that raised (read-only or full cache) threw the freshly built engine away:
    the backend failed to start, and did so again at every start after a rebuild."""
    calls = Calls()
    caplog.set_level(logging.DEBUG, logger=trt_backend.__name__)
    module, origin, cached = _store(tmp_path, calls, save_fails=True).get(_fp())
    assert isinstance(module, nn.Identity) and calls.build == 1 and not cached
    assert origin.startswith("built (") and "not cached" in origin and "Read-only file system" in origin
    assert not (tmp_path / "m.ep.json").exists()  # nothing claims a cached engine
    _, origin, _ = _store(tmp_path, calls, save_fails=True).get(_fp())  # another size, the same folder
    assert calls.build == 2 and "not cached" in origin
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "not cached" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


_NOT_PASSED = object()


def test_save_is_static_and_passes_retrace_explicitly(tmp_path):
    """No dynamic_shapes ever (pytorch/TensorRT #3174). ``retrace`` is always passed, never
    left to the default (``save``'s default changed between releases): True where save has
    a dynamic_shapes parameter (2.10 on), False before (2.8/2.9)."""
    seen = {}

    def save_new(module, path, *, output_format, arg_inputs, dynamic_shapes=None, retrace=_NOT_PASSED):
        seen.update(dynamic_shapes=dynamic_shapes, retrace=retrace, shape=tuple(arg_inputs[0].shape))
        open(path, "wb").close()

    def save_2_8(module, path, *, output_format, arg_inputs, retrace=True):
        seen.update(retrace=retrace, old=True)
        open(path, "wb").close()

    def save_without_retrace(module, path, *, output_format, arg_inputs, **kwargs):
        seen.update(kwargs=kwargs)
        open(path, "wb").close()

    example = torch.zeros(1, 1, 64, 80)
    save_engine(types.SimpleNamespace(save=save_new), nn.Identity(), tmp_path / "a.ep", example)
    assert seen == {"dynamic_shapes": None, "retrace": True, "shape": (1, 1, 64, 80)}
    assert (tmp_path / "a.ep").is_file()
    seen.clear()
    save_engine(types.SimpleNamespace(save=save_2_8), nn.Identity(), tmp_path / "b.ep", example)
    assert seen == {"retrace": False, "old": True}
    seen.clear()
    save_engine(types.SimpleNamespace(save=save_without_retrace), nn.Identity(), tmp_path / "c.ep", example)
    assert seen == {"kwargs": {}}


def test_compile_engine_is_static_at_the_padded_size(tiny_model):
    """One engine per frame size: a static export and a fixed-shape Input."""
    model, info = tiny_model
    seen = {}

    class FakeInput:
        def __init__(self, **kwargs):
            seen["input"] = kwargs

    def fake_compile(program, **kwargs):
        seen["program"] = program
        return nn.Identity()

    fake = types.SimpleNamespace(Input=FakeInput, dynamo=types.SimpleNamespace(compile=fake_compile))
    plan = precision_plan("fp32", "2.8.0")
    trt_backend.compile_engine(fake, model, info.model.stride, (64, 80), plan, CPU)
    assert seen["input"] == {"shape": (1, 1, 64, 80), "dtype": torch.float32}
    program = seen["program"]
    (user_input,) = program.graph_signature.user_inputs
    node = next(n for n in program.graph.nodes if n.name == user_input)
    shape = tuple(node.meta["val"].shape)
    assert shape == (1, 1, 64, 80) and all(type(d) is int for d in shape)  # no symbols
    assert not seen["program"].range_constraints


def test_import_failure_of_any_kind_is_a_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # -> ImportError
    with pytest.raises(BackendError, match="torch_tensorrt unavailable"):
        import_torch_tensorrt()
    monkeypatch.delitem(sys.modules, "torch_tensorrt")
    real_import = builtins.__import__

    def no_driver(name, *args, **kwargs):
        if name.startswith("torch_tensorrt"):
            raise OSError("libcuda.so.1: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_driver)
    with pytest.raises(BackendError, match="OSError: libcuda"):
        import_torch_tensorrt()


def test_backend_without_cuda_is_a_backend_error(tiny_model, monkeypatch):
    model, info = tiny_model
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fake = types.SimpleNamespace(__version__="2.13.0")
    with pytest.raises(BackendError, match="no CUDA device"):
        trt_backend.TensorRTBackend(model, info, BackendOptions(), trt=fake)


class FakeCudagraphsRuntime:
    """``torch_tensorrt.runtime``'s CUDA-graph switch as 2.6-2.8 have it (its
    ``_cudagraphs`` module): one process-wide mode, 0 off, 1 subgraph, 2 whole graph;
    ``get_cudagraphs_mode`` says True in subgraph mode only; ``set_cudagraphs_mode`` takes
    a bool; a context records the raw mode when made, enters whole-graph mode for a module
    with PyTorch parts (``_run_on_gpu`` children; wrapped) and subgraph mode otherwise (a
    program loaded from the cache, whose engines are ``execute_engine`` calls), and on exit
    calls ``set_cudagraphs_mode(old)``, which makes a 2 a 1."""

    def __init__(self, mode: int = 0) -> None:
        self._cudagraphs = types.SimpleNamespace(_PY_RT_CUDAGRAPHS=mode)
        self.entered = self.exited = 0

    @property
    def mode(self) -> int:
        return self._cudagraphs._PY_RT_CUDAGRAPHS

    def get_cudagraphs_mode(self) -> bool:
        return self.mode == 1

    def set_cudagraphs_mode(self, mode: bool) -> None:
        self._cudagraphs._PY_RT_CUDAGRAPHS = 1 if mode else 0

    def enable_cudagraphs(self, module: nn.Module) -> object:
        runtime = self

        class Context:
            old_mode = runtime.mode

            def __enter__(self) -> nn.Module:
                runtime.entered += 1
                if any("_run_on_gpu" in name for name, _ in module.named_children()):
                    runtime._cudagraphs._PY_RT_CUDAGRAPHS = 2
                    return nn.Sequential(module)  # stands for CudaGraphsTorchTensorRTModule
                runtime.set_cudagraphs_mode(True)
                return module

            def __exit__(self, *exc: object) -> None:
                runtime.exited += 1
                runtime.set_cudagraphs_mode(self.old_mode)

        return Context()


def loaded_program() -> fx.GraphModule:
    """What ``torch_tensorrt.load(...).module()`` gives: a flat graph whose engines are
    ``execute_engine`` calls and whose PyTorch ops sit between them; no submodules."""

    def execute_engine(x):  # stands for torch.ops.tensorrt.execute_engine
        return x

    graph = fx.Graph()
    x = graph.placeholder("x")
    y = graph.call_function(execute_engine, (x,))
    z = graph.call_function(torch.ops.aten.relu.default, (y,))
    graph.output(graph.call_function(execute_engine, (z,)))
    return fx.GraphModule(nn.Module(), graph)


class FakeCUDA:
    """``torch.cuda``'s stream and graph API on the CPU: captures (with their keyword
    arguments) and replays are counted; a replay recomputes nothing."""

    def __init__(self) -> None:
        self.captures: list[dict[str, object]] = []
        self.graphs: list[FakeCUDA.Graph] = []
        fake = self

        class Graph:
            def __init__(self) -> None:
                self.replays = 0
                fake.graphs.append(self)

            def replay(self) -> None:
                self.replays += 1

        class Stream:
            def __init__(self, device=None) -> None:
                pass

            def wait_stream(self, other) -> None:
                pass

        self.Graph, self.Stream = Graph, Stream

    def install(self, monkeypatch) -> None:
        @contextlib.contextmanager
        def stream(_s):
            yield

        @contextlib.contextmanager
        def graph(_g, **kwargs):
            self.captures.append(kwargs)
            yield

        monkeypatch.setattr(torch.cuda, "CUDAGraph", self.Graph)
        monkeypatch.setattr(torch.cuda, "Stream", self.Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: self.Stream())
        monkeypatch.setattr(torch.cuda, "stream", stream)
        monkeypatch.setattr(torch.cuda, "graph", graph)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device and torch_tensorrt 2.8 faked on the CPU: "engines" are identities, their
    builds are recorded (``builds``: padded (H, W)), a built program has PyTorch parts as
    submodules when ``partitioned``, a loaded one is :func:`loaded_program`, CUDA's graph
    API is :class:`FakeCUDA` and frames stay on the CPU. ``gpu`` / ``tensorrt``: the
    device's compute capability and the TensorRT version, changeable."""
    import copy

    from irstd_ros.inference.backends import _cuda

    builds: list[tuple[int, int]] = []
    fake = types.ModuleType("torch_tensorrt")
    fake.__version__ = "2.8.0"
    fake.runtime = FakeCudagraphsRuntime()
    state = types.SimpleNamespace(builds=builds, trt=fake, cuda=FakeCUDA(), loads=[],
                                  gpu=("Orin", 8, 7), tensorrt="10.3.0.30")
    state.cuda.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(name=state.gpu[0], major=state.gpu[1],
                                                             minor=state.gpu[2]))
    monkeypatch.setattr(trt_backend, "tensorrt_version", lambda: state.tensorrt)
    monkeypatch.setattr(trt_backend, "prepare_model", lambda model, plan, device: copy.deepcopy(model))
    monkeypatch.setattr(trt_backend, "example_input", lambda *a, **k: None)

    def program() -> nn.Module:  # TensorRT parts, and PyTorch parts where partitioned
        return nn.ModuleDict({"_run_on_acc_0": nn.Identity(), "_run_on_gpu_1": nn.Identity()}) \
            if fake.partitioned else nn.Identity()

    class Program(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, part in program().named_children():
                self.add_module(name, part)

        def forward(self, x):
            return x

    def compile_engine(trt, model, stride, hw, plan, device):
        builds.append(hw)
        return Program(), None

    def load_engine(trt, path):
        state.loads.append(path.name)
        return loaded_program()

    fake.partitioned = False
    monkeypatch.setattr(trt_backend, "compile_engine", compile_engine)
    monkeypatch.setattr(trt_backend, "save_engine", lambda trt, module, path, example: path.write_bytes(b"e"))
    monkeypatch.setattr(trt_backend, "load_engine", load_engine)
    monkeypatch.setattr(_cuda.StagingBuffers, "upload", lambda self, frame, device: self.stage(frame, False)[None, None])
    return state


def test_auto_warm_up_runs_the_start_engine_and_builds_no_other(tiny_model, tmp_path, fake_gpu):
    """The node names no frame size: ``auto`` warms ``tensorrt`` up on the engine it started
    with, not on a 64x64 frame (an engine no camera uses, minutes to build on a Jetson)."""
    from irstd_ros.inference.backends.select import create_backend

    model, info = tiny_model
    backend = create_backend("auto", model, info, BackendOptions(cache_dir=str(tmp_path)))
    assert backend.name == "tensorrt"
    assert fake_gpu.builds == [trt_backend.DEFAULT_FRAME]
    assert list(backend.engines) == [trt_backend.DEFAULT_FRAME]


def test_a_tiled_warm_up_runs_one_tile_and_builds_no_64px_engine(tiny_model, tmp_path, fake_gpu):
    """With tiling the warm-up frame reached the inner ``tensorrt`` as 64x64 (the tiling
    wrapper had no warm-up size): an engine no tile uses. It is one whole tile now, the
    engine every frame larger than a tile runs on."""
    from irstd_ros.inference.backends.select import create_backend

    model, info = tiny_model
    create_backend("auto", model, info, BackendOptions(cache_dir=str(tmp_path), tile_size=256))
    assert fake_gpu.builds == [(256, 256)]  # nor a full-frame start engine that no tile runs on
    fake_gpu.builds.clear()  # a frame smaller than a tile in one side: a tile is that side
    create_backend("auto", model, info, BackendOptions(cache_dir=str(tmp_path / "b"), tile_size=256, height=128,
                                                       width=640))
    assert fake_gpu.builds == [(128, 256)]


def test_two_gpus_sharing_a_cache_keep_an_engine_each(tiny_model, tmp_path, fake_gpu):
    """A desktop and a Jetson with one NFS home: the engine file was named by weights,
    precision and size only, so each start rebuilt it for its own GPU over the other's.
    Its name holds the compute capability and TensorRT major.minor now."""
    model, info = tiny_model
    options = BackendOptions(precision="fp16", cache_dir=str(tmp_path), height=256, width=320)
    jetson = trt_backend.TensorRTBackend(model, info, options)
    assert jetson.path.name.endswith("-trt-fp16-sm87-trt10.3-256x320.ep"), jetson.path.name
    fake_gpu.gpu, fake_gpu.tensorrt = ("NVIDIA H200", 9, 0), "10.14.1.48"
    desktop = trt_backend.TensorRTBackend(model, info, options)
    assert desktop.path.name.endswith("-sm90-trt10.14-256x320.ep") and desktop.path != jetson.path
    assert fake_gpu.builds == [(256, 320), (256, 320)]
    fake_gpu.gpu, fake_gpu.tensorrt = ("Orin", 8, 7), "10.3.0.30"
    again = trt_backend.TensorRTBackend(model, info, options)
    assert again.origin == "loaded" and again.path == jetson.path and len(fake_gpu.builds) == 2
    # the node (no size in its options) finds this GPU's engine, not the other's
    node = trt_backend.TensorRTBackend(model, info, BackendOptions(precision="fp16", cache_dir=str(tmp_path)))
    assert node.origin == "loaded" and node.hw == (256, 320) and len(fake_gpu.builds) == 2


def test_a_backend_with_an_unwritable_cache_still_starts(tiny_model, tmp_path, fake_gpu, monkeypatch):
    """The save raised out of the constructor: no backend, though the engine was built."""
    import numpy as np

    def read_only(trt, module, path, example):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(trt_backend, "save_engine", read_only)
    model, info = tiny_model
    backend = trt_backend.TensorRTBackend(model, info, BackendOptions(cache_dir=str(tmp_path), height=64, width=64))
    desc = backend.describe()
    assert desc["engine_cached"] is False and "Permission denied" in desc["engine_origin"]
    assert backend.predict(np.zeros((64, 64), np.float32)).shape == (64, 64)


@pytest.mark.parametrize("partitioned", [False, True])
def test_cuda_graphs_capture_built_and_loaded_engines_whole(tiny_model, tmp_path, fake_gpu, partitioned):
    """``torch_tensorrt.runtime.enable_cudagraphs`` captured the whole program only for a
    module with ``_run_on_gpu`` children: an engine loaded from the cache (``execute_engine``
    calls) ran in subgraph mode, and as the mode is process-wide, loading one beside a built
    one switched both to it. Each engine, built or loaded, is now captured whole with
    ``torch.cuda.graph`` (thread-local capture errors), once per engine, then replayed;
    Torch-TensorRT's mode is never touched, and describe() says what runs."""
    import numpy as np

    model, info = tiny_model
    runtime = fake_gpu.trt.runtime
    fake_gpu.trt.partitioned = partitioned
    options = BackendOptions(precision="fp16", cache_dir=str(tmp_path), cuda_graphs=True, height=64, width=64)
    built = trt_backend.TensorRTBackend(model, info, options)
    loaded = trt_backend.TensorRTBackend(model, info, options)
    assert built.origin.startswith("built") and loaded.origin == "loaded"
    assert isinstance(loaded.current.module, fx.GraphModule) and not list(loaded.current.module.children())
    for backend in (built, loaded):
        assert backend.describe()["cuda_graphs_captured"] == 0  # on the first frame
        frames = [np.full((64, 64), v, np.float32) for v in (0.25, 0.75)]
        for frame in frames:
            backend.predict(frame)
        engine = backend.current
        assert engine.graph is not None and engine.graph.graph.replays == len(frames)
        # the last frame (normalised before the backend) in the graph's static input
        assert torch.equal(engine.graph.static_in[0, 0], torch.from_numpy(frames[-1]).half())
        desc = backend.describe()
        assert desc["cuda_graphs_mode"].startswith("whole program") and desc["cuda_graphs_captured"] == 1
    assert len(fake_gpu.cuda.captures) == 2  # one per engine, none again
    assert all(c == {"capture_error_mode": "thread_local"} for c in fake_gpu.cuda.captures)
    assert runtime.entered == 0 and runtime.mode == 0  # Torch-TensorRT's switch left alone
    built.predict(np.zeros((96, 96), np.float32))  # another size: its own engine and graph
    assert len(fake_gpu.cuda.captures) == 3
    built.close()
    assert not built.engines and runtime.mode == 0


def test_cuda_graphs_refuse_torch_tensorrt_s_subgraph_mode(tiny_model, tmp_path, fake_gpu):
    """Someone else's ``enable_cudagraphs`` left Torch-TensorRT capturing each engine itself:
    a capture of ours around it would fail inside CUDA; say why instead."""
    import numpy as np

    from irstd_ros.errors import BackendError

    model, info = tiny_model
    fake_gpu.trt.runtime.set_cudagraphs_mode(True)
    backend = trt_backend.TensorRTBackend(model, info, BackendOptions(cache_dir=str(tmp_path), cuda_graphs=True,
                                                                      height=64, width=64))
    with pytest.raises(BackendError, match="subgraph CUDA-graph mode is on"):
        backend.predict(np.zeros((64, 64), np.float32))
    assert not fake_gpu.cuda.captures


def test_tensorrt_tests_skip_where_torch_tensorrt_does_not_import(request, monkeypatch):
    """The skip rule of the ``tensorrt`` marker imported ``tensorrt``: with the TensorRT
    bindings but no torch_tensorrt (JetPack's system TensorRT, say) the tests ran and
    failed instead of being skipped."""
    root_conftest = Path(__file__).resolve().parents[2] / "conftest.py"
    plugin = next(p for p in request.config.pluginmanager.get_plugins()
                  if getattr(p, "__file__", None) and Path(p.__file__).resolve() == root_conftest)
    check = plugin.tensorrt_unavailable_reason
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # -> ImportError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for cached in (check, plugin.cuda_unavailable_reason):
        cached.cache_clear()
        request.addfinalizer(cached.cache_clear)
    reason = check()
    assert reason is not None and "torch_tensorrt" in reason


def test_padded_sizes():
    assert padded_size(512, 640, 16) == (512, 640)
    assert padded_size(1080, 1920, 16) == (1088, 1920)
    assert padded_size(1, 17, 16) == (16, 32)


# --- on a GPU with torch_tensorrt (skipped elsewhere) -------------------------------------------
TRT_PROB_ATOL = {"fp32": 1e-3, "fp16": 2e-2}  # vs eager FP32 probabilities
TRT_MASK_AGREEMENT = 0.999  # fraction of pixels whose thresholded mask agrees


@pytest.mark.tensorrt
@pytest.mark.parametrize(("precision", "height", "width", "padded"), [
    ("fp32", 100, 130, (112, 144)),
    ("fp16", 100, 130, (112, 144)),
    # a camera's size: the SGEM's L2 norm sums squares over 160x128 = 20480 pixels, which
    # overflowed FP16 where the norm was (meant to be) kept out of an FP16 engine (2.8/2.9)
    ("fp16", 512, 640, (512, 640)),
], ids=["fp32-100x130", "fp16-100x130", "fp16-640x512"])
def test_tensorrt_parity_build_then_load(tiny_model, tmp_path, make_frame, precision, height, width, padded):
    """Build, save, load (no compile) and run against eager FP32; then the loaded engine
    again as one CUDA graph (``cuda_graphs``), on two frames (its static input refreshed)."""
    from dataclasses import replace

    import numpy as np

    from irstd_ros.inference.backends.torch_cpu import TorchCPUBackend

    model, info = tiny_model
    options = BackendOptions(precision=precision, cache_dir=str(tmp_path), height=height, width=width)
    built = trt_backend.TensorRTBackend(model, info, options)
    assert built.origin.startswith("built") and built.describe()["engine_cached"] is True
    loaded = trt_backend.TensorRTBackend(model, info, options)
    assert loaded.origin == "loaded"
    assert loaded.describe()["trt_engines"] >= 1
    assert loaded.describe()["engine_hw"] == list(padded)  # static, the padded frame size
    graphs = trt_backend.TensorRTBackend(model, info, replace(options, cuda_graphs=True))
    assert graphs.origin == "loaded"
    cpu = TorchCPUBackend(model, info)
    for backend, seeds in ((built, (1,)), (loaded, (1,)), (graphs, (1, 2))):
        for seed in seeds:
            frame = make_frame(height, width, seed)
            ref = cpu.predict(frame)
            prob = backend.predict(frame)
            assert prob.shape == frame.shape and np.isfinite(prob).all()
            assert np.abs(prob - ref).max() <= TRT_PROB_ATOL[precision], (backend.describe()["engine_origin"], seed)
            thr = float(np.quantile(ref, 0.99))
            assert ((prob > thr) == (ref > thr)).mean() >= TRT_MASK_AGREEMENT
            assert (backend.predict_mask(frame, thr) == (prob > thr)).mean() >= TRT_MASK_AGREEMENT
    assert graphs.describe()["cuda_graphs_captured"] == 1
