"""TensorRT backend: everything that runs without a GPU, plus GPU tests (skipped here).

CPU: export with stride-constrained dynamic dims at several sizes (the ONNX path's export),
the static per-size engine export, the per-version precision arguments, SGEM staying FP32
in the exported half graph, graph coverage counting, the load-or-rebuild decision with
mocked compile/save/load, save arguments per torch_tensorrt signature, import failures.
"""

from __future__ import annotations

import builtins
import sys
import types

import pytest
import torch
from torch import fx, nn

from irstd_ros.errors import BackendError
from irstd_ros.inference.backends import tensorrt as trt_backend
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.fingerprint import Fingerprint, save_fingerprint
from irstd_ros.inference.backends.graph_export import export_program, padded_size
from irstd_ros.inference.backends.tensorrt import (
    SGEM_FP32_OPS,
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


@pytest.mark.parametrize(
    ("version", "uses_enabled_precisions", "model_dtype"),
    [
        ("2.8.0+cu126", True, torch.float32),  # JetPack 6
        ("2.9.0", True, torch.float32),
        ("2.10.0.dev20251101+cu130", False, torch.float16),
        ("2.12.1", False, torch.float16),
        ("2.13.0", False, torch.float16),
        ("2.14.0", False, torch.float16),
    ],
)
def test_fp16_arguments_per_torch_tensorrt_version(version, uses_enabled_precisions, model_dtype):
    plan = precision_plan("fp16", version)
    assert plan.model_dtype == model_dtype
    if uses_enabled_precisions:
        assert plan.compile_kwargs["enabled_precisions"] == {torch.float16, torch.float32}
        assert {f"torch.ops.{op}" for op in plan.compile_kwargs["torch_executed_ops"]} == set(SGEM_FP32_OPS)
        assert "use_explicit_typing" not in plan.compile_kwargs
    else:
        assert "enabled_precisions" not in plan.compile_kwargs  # gone in 2.13, refused with explicit typing
        assert plan.compile_kwargs["use_explicit_typing"] is True
        assert "enable_autocast" not in plan.compile_kwargs


def test_fp32_arguments_and_bad_precision():
    assert precision_plan("fp32", "2.8.0").compile_kwargs == {"enabled_precisions": {torch.float32}}
    assert precision_plan("fp32", "2.13.0").compile_kwargs == {"use_explicit_typing": True}
    with pytest.raises(BackendError, match="valid: fp32, fp16"):
        precision_plan("int8", "2.13.0")
    with pytest.raises(BackendError, match="cannot parse"):
        precision_plan("fp16", "nightly")


def _op_nodes(program: torch.export.ExportedProgram) -> list[fx.Node]:
    return [n for n in program.graph.nodes if n.op == "call_function"]


def test_sgem_ops_occur_only_inside_sgem(exported):
    """Excluding SGEM_FP32_OPS (torch_tensorrt <= 2.9) excludes exactly the SGEM attention."""
    found = set()
    for node in _op_nodes(exported.run_decompositions()):
        name = f"torch.ops.{node.target}"
        if name in SGEM_FP32_OPS:
            found.add(name)
            stack = " ".join(str(v) for v in node.meta.get("nn_module_stack", {}).values())
            assert "sgem" in stack.lower(), (name, stack)
    assert found == set(SGEM_FP32_OPS)


def test_half_model_keeps_sgem_attention_fp32(tiny_model):
    """torch_tensorrt >= 2.10: the half graph computes the SGEM attention in FP32."""
    model, info = tiny_model
    plan = precision_plan("fp16", "2.13.0")
    half = prepare_model(model, plan, CPU)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched
    program = export_program(half, info.model.stride, torch.zeros(1, 1, 64, 64, dtype=torch.float16))
    dtypes: dict[str, set[torch.dtype]] = {}
    for node in _op_nodes(program.run_decompositions()):
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            dtypes.setdefault(f"torch.ops.{node.target}", set()).add(val.dtype)
    for op in SGEM_FP32_OPS:
        assert dtypes[op] == {torch.float32}, op
    assert torch.float16 in dtypes["torch.ops.aten.convolution.default"]
    assert "torch.ops.aten._to_copy.default" in dtypes  # the explicit casts around SGEM


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


def _store(tmp_path, calls: Calls, load_fails: bool = False) -> EngineStore:
    def build():
        calls.build += 1
        return nn.Identity()

    def save(module, path):
        calls.save += 1
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
    _, origin = _store(tmp_path, calls).get(_fp())
    assert (calls.build, calls.save, calls.load) == (1, 1, 0) and origin.startswith("built")
    _, origin = _store(tmp_path, calls).get(_fp())
    assert (calls.build, calls.load) == (1, 1) and origin == "loaded"


def test_fingerprint_mismatch_triggers_rebuild(tmp_path):
    calls = Calls()
    (tmp_path / "m.ep").write_bytes(b"old engine")
    save_fingerprint(tmp_path / "m.ep", _fp(versions={"torch_tensorrt": "2.8.0"}))
    _, origin = _store(tmp_path, calls).get(_fp())
    assert (calls.build, calls.save, calls.load) == (1, 1, 0)
    assert "versions.torch_tensorrt: 2.8.0 -> 2.13.0" in origin


def test_unloadable_engine_is_rebuilt(tmp_path):
    calls = Calls()
    (tmp_path / "m.ep").write_bytes(b"engine")
    save_fingerprint(tmp_path / "m.ep", _fp())
    _, origin = _store(tmp_path, calls, load_fails=True).get(_fp())
    assert (calls.load, calls.build) == (1, 1) and "loading" in origin


def test_save_is_static_per_signature(tmp_path):
    """No dynamic_shapes ever (pytorch/TensorRT #3174); retrace=False only where save has
    no dynamic_shapes parameter (<= 2.9, which then serialises the compiled graph as is)."""
    seen = {}

    def save_new(module, path, *, output_format, arg_inputs, dynamic_shapes=None, retrace=True):
        seen.update(dynamic_shapes=dynamic_shapes, retrace=retrace, shape=tuple(arg_inputs[0].shape))
        open(path, "wb").close()

    def save_old(module, path, *, output_format, arg_inputs, retrace=False):
        seen.update(retrace=retrace, old=True)
        open(path, "wb").close()

    example = torch.zeros(1, 1, 64, 80)
    save_engine(types.SimpleNamespace(save=save_new), nn.Identity(), tmp_path / "a.ep", example)
    assert seen == {"dynamic_shapes": None, "retrace": True, "shape": (1, 1, 64, 80)}
    assert (tmp_path / "a.ep").is_file()
    seen.clear()
    save_engine(types.SimpleNamespace(save=save_old), nn.Identity(), tmp_path / "b.ep", example)
    assert seen == {"retrace": False, "old": True}


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
    with PyTorch parts (``_run_on_gpu`` children; wrapped) and subgraph mode otherwise, and
    on exit calls ``set_cudagraphs_mode(old)``, which makes a 2 a 1."""

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


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device and torch_tensorrt 2.8 faked on the CPU: "engines" are identities, their
    builds are recorded (``builds``: padded (H, W)), and frames stay on the CPU."""
    import copy

    from irstd_ros.inference.backends import _cuda

    builds: list[tuple[int, int]] = []
    fake = types.ModuleType("torch_tensorrt")
    fake.__version__ = "2.8.0"
    fake.runtime = FakeCudagraphsRuntime()
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(name="Orin", major=8, minor=7))
    monkeypatch.setattr(trt_backend, "prepare_model", lambda model, plan, device: copy.deepcopy(model))
    monkeypatch.setattr(trt_backend, "example_input", lambda *a, **k: None)

    def program() -> nn.Module:  # TensorRT parts, and the SGEM in PyTorch (2.8's partitioning)
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

    fake.partitioned = False
    monkeypatch.setattr(trt_backend, "compile_engine", compile_engine)
    monkeypatch.setattr(trt_backend, "save_engine", lambda trt, module, path, example: path.write_bytes(b"e"))
    monkeypatch.setattr(trt_backend, "load_engine", lambda trt, path: Program())
    monkeypatch.setattr(_cuda.StagingBuffers, "upload", lambda self, frame, device: self.stage(frame, False)[None, None])
    return types.SimpleNamespace(builds=builds, trt=fake)


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


@pytest.mark.parametrize(("partitioned", "before", "while_loaded"), [
    (False, 0, 1),  # TensorRT only: subgraph mode, off before
    (True, 0, 2),  # the SGEM in PyTorch: whole-graph mode
    (True, 2, 2),  # another whole-graph user before ours: 2 again after, not 1
    (False, 1, 1),
])
def test_cuda_graphs_stay_on_while_engines_are_loaded(tiny_model, tmp_path, fake_gpu, partitioned, before,
                                                      while_loaded):
    """Dropping the least recently used engine (one frame size more than MAX_ENGINES) exited
    its graph context, whose ``set_cudagraphs_mode(bool)`` switched the mode off (or made
    whole-graph mode subgraph mode) under the engines still loaded, and the mode was then
    entered again on an engine already in a context, never exited. Closing the backend
    restores the mode it found, whole-graph mode included."""
    import numpy as np

    model, info = tiny_model
    runtime = fake_gpu.trt.runtime
    runtime._cudagraphs._PY_RT_CUDAGRAPHS = before
    fake_gpu.trt.partitioned = partitioned
    backend = trt_backend.TensorRTBackend(model, info, BackendOptions(cache_dir=str(tmp_path), cuda_graphs=True))
    for side in range(2, 2 + trt_backend.MAX_ENGINES):  # with the start engine: one size too many
        backend.predict(np.zeros((16 * side, 16 * side), np.float32))
        assert runtime.mode == while_loaded, list(backend.engines)
    assert trt_backend.DEFAULT_FRAME not in backend.engines
    assert runtime.entered == 1 + trt_backend.MAX_ENGINES  # each engine once, none entered again
    backend.close()
    assert runtime.mode == before and runtime.exited == 0


def test_padded_sizes():
    assert padded_size(512, 640, 16) == (512, 640)
    assert padded_size(1080, 1920, 16) == (1088, 1920)
    assert padded_size(1, 17, 16) == (16, 32)


# --- on a GPU with torch_tensorrt (skipped elsewhere) -------------------------------------------
TRT_PROB_ATOL = {"fp32": 1e-3, "fp16": 2e-2}  # vs eager FP32 probabilities
TRT_MASK_AGREEMENT = 0.999  # fraction of pixels whose thresholded mask agrees


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_parity_build_then_load(tiny_model, tmp_path, make_frame, precision):
    import numpy as np

    from irstd_ros.inference.backends.torch_cpu import TorchCPUBackend

    model, info = tiny_model
    options = BackendOptions(precision=precision, cache_dir=str(tmp_path), height=100, width=130)
    built = trt_backend.TensorRTBackend(model, info, options)
    assert built.origin.startswith("built")
    loaded = trt_backend.TensorRTBackend(model, info, options)
    assert loaded.origin == "loaded"
    assert loaded.describe()["trt_engines"] >= 1
    assert loaded.describe()["engine_hw"] == [112, 144]  # static, the padded frame size
    frame = make_frame(100, 130)
    ref = TorchCPUBackend(model, info).predict(frame)
    for backend in (built, loaded):
        prob = backend.predict(frame)
        assert prob.shape == frame.shape
        assert np.abs(prob - ref).max() <= TRT_PROB_ATOL[precision]
        thr = float(np.quantile(ref, 0.99))
        assert ((prob > thr) == (ref > thr)).mean() >= TRT_MASK_AGREEMENT
        assert (backend.predict_mask(frame, thr) == (prob > thr)).mean() >= TRT_MASK_AGREEMENT
