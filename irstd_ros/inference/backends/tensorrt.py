"""``tensorrt``: Torch-TensorRT (dynamo frontend) engines, one per frame size, built once,
cached, loaded at start.

One *static-shape* engine per padded frame size: ``torch.export`` of the model at that size
(no dynamic dims), ``torch_tensorrt.dynamo.compile`` with a fixed input shape, then
``torch_tensorrt.save`` of the compiled program and a fingerprint JSON beside it
(:mod:`~irstd_ros.inference.backends.fingerprint`). The file name holds the GPU's compute
capability and the TensorRT major.minor (:func:`engine_path`), so one cache shared by two
machines (a desktop and a Jetson on one NFS home) keeps an engine for each instead of
overwriting one file at every start. A cache that cannot be written (read-only, full) is
warned about once and the engine built in memory is used. Why static: ``torch_tensorrt.save``
followed by a reload of a program with *dynamic* shapes fails upstream (pytorch/TensorRT
#3174, and torch_tensorrt 2.8 is the last release for Jetson Orin / JetPack 6.2), and a
camera sends one frame size anyway; a static engine is also the one TensorRT tunes best.
At start the backend loads the saved engine of the expected size (``torch_tensorrt.load``)
without compiling, unless the fingerprint differs (other torch / torch_tensorrt /
TensorRT, GPU, shape, precision or weights): then it rebuilds and says why. A frame of
another padded size loads (or builds, once) that size's engine; :data:`MAX_ENGINES` stay
loaded (one loaded again after it was dropped is logged once and counted:
:mod:`~irstd_ros.inference.backends.shape_cache`). An engine whose file no longer has the
digest its fingerprint recorded, or whose fingerprint has none (written before digests
were recorded), is built again.

FP16, on every torch_tensorrt version (:func:`precision_plan`): a half model compiled with
``use_explicit_typing=True`` (a strongly typed network), whose SGEM modules are kept FP32
with explicit casts around them (:func:`keep_sgem_fp32`), so the whole attention runs in
FP32 *inside* TensorRT. 2.8/2.9 used to request FP16 with ``enabled_precisions`` (weak
typing: FP16 kernels anywhere) and to keep the attention ops out of TensorRT with
``torch_executed_ops``; but Torch-TensorRT decomposes ``aten.linalg_vector_norm`` before
partitioning, so the exclusion of the L2 norm matched nothing and its sum of squares over
the ~20k pixels of a 640x512 frame could overflow FP16 (inf, a flat softmax, silently).
Casts in the graph cannot be dropped by a decomposition. Torch-TensorRT Autocast
(``enable_autocast``) is not used for the same reason: its exclusions match lowered node
names/ops and fail silently. FP32: ``use_explicit_typing=True`` from 2.10
(``enabled_precisions`` deprecated there, gone in 2.13), ``enabled_precisions={fp32}``
before.

At run time the frame goes up through one pinned staging buffer; padding, the sigmoid and
(``predict_mask``) the threshold run on the GPU (:mod:`~irstd_ros.inference.backends._cuda`).
Optional CUDA graphs: each engine's whole program (TensorRT engines and whatever runs in
PyTorch between them) is captured once with ``torch.cuda.graph``, as the ``cuda`` backend
does (:func:`~irstd_ros.inference.backends.torch_cuda.capture_graph`), and replayed per
frame. Not ``torch_tensorrt.runtime.enable_cudagraphs``: it picks whole-graph mode only for
a module with ``_run_on_gpu`` children, which a program loaded from the cache
(``execute_engine`` calls) never has, so loaded engines ran in subgraph mode and, its mode
being process-wide, mixing built and loaded engines switched every engine to it.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.padding import padded_size
from irstd_ros.core.paths import atomic_path
from irstd_ros.errors import BackendError
from irstd_ros.inference.backends._cuda import (
    CudaPredictMixin,
    StagingBuffers,
    cuda_device_name,
    current_cuda_device,
    gpu_postprocess,
    gpu_preprocess,
    keep_sgem_fp32,
)
from irstd_ros.inference.backends.base import BackendOptions
from irstd_ros.inference.backends.fingerprint import (
    Fingerprint,
    rebuild_reason,
    save_fingerprint,
    weights_digest,
)
from irstd_ros.inference.backends.graph_export import (
    MIN_BLOCKS,
    artifact_stem,
    cache_root,
    example_input,
)
from irstd_ros.inference.backends.shape_cache import ShapeCache
from irstd_ros.inference.backends.torch_cuda import capture_graph

log = logging.getLogger(__name__)

RECIPE = "trt-dynamo-static-v3"  # bump when the compile settings below change: old engines rebuild
DEFAULT_FRAME = (512, 640)  # (H, W) built for when the options name no size
MIN_BLOCK_SIZE = 5  # fewest consecutive TensorRT-capable ops that make an engine
EXPLICIT_TYPING_FROM = (2, 10)  # first torch_tensorrt whose FP32 is strongly typed (FP16 always is)
ENGINE_SUFFIX = ".ep"
ENGINE_SIZE = re.compile(r"-(\d+)x(\d+)\.ep$")
ENGINE_MODULE_MARK = "TensorRTModule"  # TorchTensorRTModule, PythonTorchTensorRTModule
ENGINE_OP_MARK = "execute_engine"  # torch.ops.tensorrt.execute_engine in a loaded program
BOOKKEEPING_OPS = ("getitem", "sym_size", "_assert", "sym_constrain", "sym_numel")
PRECISIONS = ("fp32", "fp16")
MAX_ENGINES = 4  # frame sizes whose engine stays loaded (least recently used dropped)
ENGINES_REMEDY = "Feed fewer frame sizes, or tile them (tile_size: one engine serves every tile)."


def import_torch_tensorrt() -> Any:
    """``import torch_tensorrt``; ANY failure (no driver, CUDA mismatch...) is a BackendError.

    On a machine without an NVIDIA driver the import may raise OSError, RuntimeError,
    AttributeError... not only ImportError; the caller falls back on BackendError.
    """
    try:
        import torch_tensorrt
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise BackendError(f"torch_tensorrt unavailable ({type(exc).__name__}: {exc})") from None
    return torch_tensorrt


def parse_version(text: str) -> tuple[int, int]:
    """``"2.8.0+cu126"`` / ``"2.10.0.dev20251101"`` -> (2, 8) / (2, 10)."""
    match = re.match(r"(\d+)\.(\d+)", text)
    if not match:
        raise BackendError(f"cannot parse version {text!r}")
    return int(match.group(1)), int(match.group(2))


def tensorrt_version() -> str:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception:  # noqa: BLE001 - any import failure only means "unknown"
        return "unknown"


@dataclass(frozen=True)
class PrecisionPlan:
    """How to get ``precision`` out of one torch_tensorrt version."""

    precision: str
    model_dtype: torch.dtype  # dtype of the exported model's weights and input
    compile_kwargs: dict[str, Any] = field(default_factory=dict)
    sgem: str = "fp32"  # how SGEM stays FP32 (for describe())
    name: str = ""  # short tag for the fingerprint recipe


def precision_plan(precision: str, trt_version: str) -> PrecisionPlan:
    """Compile arguments for ``precision`` on torch_tensorrt ``trt_version`` (see module doc)."""
    if precision not in PRECISIONS:
        raise BackendError(f"tensorrt precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    explicit = parse_version(trt_version) >= EXPLICIT_TYPING_FROM
    if precision == "fp32":
        if explicit:
            return PrecisionPlan("fp32", torch.float32, {"use_explicit_typing": True}, name="fp32-explicit")
        return PrecisionPlan("fp32", torch.float32, {"enabled_precisions": {torch.float32}}, name="fp32-weak")
    # Every version: no enabled_precisions (refused together with use_explicit_typing, gone
    # in 2.13), no torch_executed_ops (Torch-TensorRT decomposes aten.linalg_vector_norm
    # before partitioning, so excluding it kept nothing out of an FP16 engine).
    return PrecisionPlan(
        "fp16",
        torch.float16,
        {"use_explicit_typing": True},
        sgem="FP32 inside TensorRT (explicit casts, strongly typed network)",
        name="fp16-half-model",
    )


def pad_to_min(x: torch.Tensor, min_hw: tuple[int, int]) -> torch.Tensor:
    """Replicate-pad (bottom/right) a padded input up to the engine's smallest (H, W)."""
    ph, pw = max(min_hw[0] - x.shape[-2], 0), max(min_hw[1] - x.shape[-1], 0)
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def prepare_model(model: nn.Module, plan: PrecisionPlan, device: torch.device) -> nn.Module:
    """A copy of ``model`` in the plan's dtype on ``device`` (the caller's model is untouched)."""
    model = copy.deepcopy(model).eval().to(device)
    if plan.model_dtype == torch.float16:
        model.half()
        keep_sgem_fp32(model, for_export=True)
    else:
        model.float()
    return model


def _target_name(target: Any) -> str:
    """``aten.convolution.default`` for ATen ops, the function name otherwise."""
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return str(target)
    return str(getattr(target, "__name__", target))


def graph_coverage(module: nn.Module) -> dict[str, Any]:
    """How much of a compiled module runs in TensorRT.

    Counts TensorRT engines (engine submodules of a freshly compiled GraphModule, or
    ``execute_engine`` calls in a loaded program), PyTorch subgraphs (``_run_on_gpu_*``)
    and the ops that run in PyTorch (call_function nodes outside the engines, bookkeeping
    such as ``getitem``/``sym_size`` left out).
    """
    engines, torch_subgraphs = 0, 0
    fallback: Counter[str] = Counter()

    def visit(gm: nn.Module, top: bool) -> None:
        nonlocal engines, torch_subgraphs
        for _, child in gm.named_children():
            if ENGINE_MODULE_MARK in type(child).__name__:
                engines += 1
            elif isinstance(child, fx.GraphModule):
                if top:
                    torch_subgraphs += 1
                visit(child, top=False)
        graph = getattr(gm, "graph", None)
        if graph is None:
            return
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            name = _target_name(node.target)
            if ENGINE_OP_MARK in name:
                engines += 1
            elif not any(mark in name for mark in BOOKKEEPING_OPS):
                fallback[name] += 1

    visit(module, top=True)
    return {
        "trt_engines": engines,
        "torch_subgraphs": torch_subgraphs,
        "fallback_ops": sum(fallback.values()),
        "fallback_op_types": dict(sorted(fallback.items())),
    }


def export_static(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` at exactly ``example``'s shape (no dynamic dims)."""
    try:
        return torch.export.export(model.eval(), (example,))
    except Exception as exc:  # torch.export raises many types
        raise BackendError(f"torch.export of the model failed: {type(exc).__name__}: {exc}") from exc


def compile_engine(
    trt: Any,
    model: nn.Module,
    stride: int,
    hw: tuple[int, int],
    plan: PrecisionPlan,
    device: torch.device,
) -> tuple[nn.Module, torch.Tensor]:
    """Export and compile a static engine for padded size ``hw``; (GraphModule, example input)."""
    example = example_input(stride, hw, plan.model_dtype, device)
    program = export_static(model, example)
    spec = trt.Input(shape=(1, 1, *hw), dtype=plan.model_dtype)
    compiled = trt.dynamo.compile(
        program,
        arg_inputs=[spec],
        device=device,
        min_block_size=MIN_BLOCK_SIZE,
        **plan.compile_kwargs,
    )
    return compiled, example


def save_engine(trt: Any, module: nn.Module, path: Path, example: torch.Tensor) -> None:
    """``torch_tensorrt.save`` as an ExportedProgram of static shape (``example``'s).

    No ``dynamic_shapes``: a static program survives save -> load on every release from 2.8
    (dynamic ones do not, pytorch/TensorRT #3174). ``retrace`` is always passed, never left
    to ``save``'s default (which changed between releases): ``True`` where ``save`` takes
    ``dynamic_shapes`` (2.10 on: a plain ``torch.export`` of the static program with
    ``arg_inputs``), ``False`` before (2.8/2.9: the compiled graph serialised as it is).
    """
    params = inspect.signature(trt.save).parameters
    kwargs: dict[str, Any] = {"output_format": "exported_program", "arg_inputs": [example]}
    if "retrace" in params:
        kwargs["retrace"] = "dynamic_shapes" in params
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        trt.save(module, str(tmp), **kwargs)


def load_engine(trt: Any, path: Path) -> nn.Module:
    """Load a saved program without compiling (``torch_tensorrt.load`` / ``torch.export.load``)."""
    loader = getattr(trt, "load", None) or torch.export.load
    program = loader(str(path))
    module = program.module() if hasattr(program, "module") else program
    return cast(nn.Module, module)


# cache folders whose failed engine save was warned about. Not fingerprint.warn_once: its
# key holds the file's mtime and size, and a failed save's temporary file changes the
# folder's, so a full disk would warn again for every engine (nor would it log the repeats).
_unsaved_dirs: set[Path] = set()


@dataclass
class EngineStore:
    """Load-or-build of one cached artefact with its fingerprint (no GPU needed itself)."""

    path: Path
    build: Callable[[], nn.Module]
    save: Callable[[nn.Module, Path], None]
    load: Callable[[Path], nn.Module]

    def get(self, expected: Fingerprint) -> tuple[nn.Module, str, bool]:
        """(module, how it was obtained: ``loaded``, ``built (reason)``, or
        ``built (reason); not cached (...)`` when the save failed; whether it is in the
        cache: False when the save failed, so the next start builds it again)."""
        reason = rebuild_reason(self.path, expected)
        if reason is None:
            try:
                return self.load(self.path), "loaded", True
            except Exception as exc:  # noqa: BLE001 - a corrupt/incompatible file: rebuild
                reason = f"loading {self.path} failed ({type(exc).__name__}: {exc})"
        log.info("building TensorRT engine %s: %s", self.path, reason)
        module = self.build()
        try:
            self.save(module, self.path)
            save_fingerprint(self.path, expected)
        except Exception as exc:  # noqa: BLE001 - OSError, or save's own errors: the engine still runs
            return module, f"built ({reason}); not cached ({self._save_failed(exc)})", False
        return module, f"built ({reason})", True

    def _save_failed(self, exc: Exception) -> str:
        """Say once per cache folder that engines built there are not kept (the next start
        builds them again); the built engine is used all the same."""
        what = f"saving failed: {type(exc).__name__}: {exc}"
        folder = self.path.parent
        if folder in _unsaved_dirs:
            log.debug("TensorRT engine %s not cached: %s", self.path, what)
        else:
            _unsaved_dirs.add(folder)
            log.warning(
                "TensorRT engine %s was built but not cached (%s); it runs from memory, and every "
                "start builds it again (minutes on a Jetson) until %s is writable (cache_dir, "
                "$IRSTD_CACHE_DIR).", self.path, what, folder,
            )
        return what


def device_tag(props: Any, tensorrt: str) -> str:
    """``sm87-trt10.3``: the compute capability of ``props`` (``get_device_properties``) and
    the TensorRT major.minor, what an engine file is specific to."""
    match = re.match(r"(\d+)\.(\d+)", tensorrt)
    trt = f"trt{match.group(1)}.{match.group(2)}" if match else "trt-unknown"
    return f"sm{props.major}{props.minor}-{trt}"


def engine_path(root: Path, info: CheckpointInfo, digest: str, precision: str, tag: str,
                hw: tuple[int, int]) -> Path:
    """``<arch>-<digest>-trt-<precision>-<tag>-<H>x<W>.ep``, ``tag`` from :func:`device_tag`."""
    return root / f"{artifact_stem(info, digest)}-trt-{precision}-{tag}-{hw[0]}x{hw[1]}{ENGINE_SUFFIX}"


class WholeGraph:
    """One engine's whole program (TensorRT engines and the PyTorch ops between them)
    captured into one CUDA graph on its first call, replayed on every later one.

    Torch-TensorRT's own ``enable_cudagraphs`` is not used: it captures the whole program
    only for a module with ``_run_on_gpu`` children (a freshly compiled one with PyTorch
    parts), so a program loaded from the cache (``execute_engine`` calls) got its engines
    captured one by one, and the mode, process-wide, switched every engine to that.
    Here the runtime stays in its standard mode and each engine, built or loaded, is one
    graph (:func:`~irstd_ros.inference.backends.torch_cuda.capture_graph`). Not
    thread-safe: the backend calls it under the lock that serialises its frames.
    """

    def __init__(self, module: nn.Module, check: Callable[[], None]) -> None:
        self.module = module
        self.check = check  # raises BackendError where a capture cannot work
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_in: torch.Tensor | None = None
        self.static_out: Any = None

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        return cast(torch.Tensor, out[0] if isinstance(out, (tuple, list)) else out)

    def __call__(self, x: torch.Tensor) -> Any:
        graph, static_in = self.graph, self.static_in
        if graph is None or static_in is None:
            self.check()
            static_in = torch.zeros_like(x)
            try:
                graph, self.static_out = capture_graph(self._logits, static_in)
            except Exception as exc:  # CUDA's capture errors are RuntimeErrors of any text
                raise BackendError(f"CUDA-graph capture of a TensorRT engine failed: {type(exc).__name__}: "
                                   f"{exc} (run without cuda_graphs)") from exc
            self.graph, self.static_in = graph, static_in
        static_in.copy_(x)
        graph.replay()
        return self.static_out


@dataclass
class LoadedEngine:
    """One frame size's engine, ready to run."""

    hw: tuple[int, int]
    path: Path
    module: nn.Module
    origin: str  # loaded | built (reason)
    cached: bool  # in the cache (False: its save failed, the next start builds it again)
    coverage: dict[str, Any]
    graph: WholeGraph | None = None  # cuda_graphs: the whole program, one CUDA graph

    @property
    def runner(self) -> Callable[..., Any]:
        """What runs a frame: the CUDA graph when there is one, else the program."""
        return self.module if self.graph is None else self.graph

    def close(self) -> None:
        """Drop the engine's CUDA graph (its memory goes with it)."""
        self.graph = None


class TensorRTBackend(CudaPredictMixin):
    """``tensorrt``: cached static-shape Torch-TensorRT programs; FP16 by default on the node."""

    name = "tensorrt"

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        options: BackendOptions | None = None,
        trt: Any = None,
    ) -> None:
        self.trt = trt or import_torch_tensorrt()
        self.torch_device = current_cuda_device(self.name)
        self.options = options or BackendOptions()
        self.info = info
        self.stride = info.model.stride
        self.min_hw = (MIN_BLOCKS * self.stride, MIN_BLOCKS * self.stride)
        self.device = cuda_device_name(self.torch_device)
        self.plan = precision_plan(self.options.precision, str(self.trt.__version__))
        self.digest = weights_digest(model, info)
        self.model = prepare_model(model, self.plan, self.torch_device)
        self.buffers = StagingBuffers()
        self.engines: ShapeCache[tuple[int, int], LoadedEngine] = ShapeCache(
            self.name, MAX_ENGINES, ENGINES_REMEDY, self._evict
        )
        props = torch.cuda.get_device_properties(self.torch_device)
        self.tag = device_tag(props, tensorrt_version())  # in the engine file names
        tile = self.options.tile_size
        if tile > 0:  # tiled: every frame larger than a tile runs on one tile's engine
            hw = padded_size(min(tile, self.options.height or tile), min(tile, self.options.width or tile),
                             self.stride)
        elif self.options.height and self.options.width:
            hw = padded_size(self.options.height, self.options.width, self.stride)
        else:  # no size given (the node): an engine built ahead of time, else the default
            hw = self._cached_size() or padded_size(*DEFAULT_FRAME, self.stride)
        self._engine(self._at_least_min(hw))

    @property
    def current(self) -> LoadedEngine:
        """The engine used last (the start-up one before the first frame)."""
        return self.engines.values()[-1]

    @property
    def path(self) -> Path:
        return self.current.path

    @property
    def origin(self) -> str:
        return self.current.origin

    @property
    def hw(self) -> tuple[int, int]:
        return self.current.hw

    @property
    def warmup_size(self) -> tuple[int, int]:
        """The (H, W) a warm-up frame should have (:func:`~irstd_ros.inference.backends.select.warm_up`):
        the current engine's, so warming up builds nothing more."""
        return self.hw

    def _at_least_min(self, hw: tuple[int, int]) -> tuple[int, int]:
        return (max(hw[0], self.min_hw[0]), max(hw[1], self.min_hw[1]))

    # --- engines ----------------------------------------------------------------------------
    def fingerprint(self, hw: tuple[int, int]) -> Fingerprint:
        props = torch.cuda.get_device_properties(self.torch_device)
        return Fingerprint(
            backend=self.name,
            precision=self.plan.precision,
            input_shape=(1, 1, *hw),
            shape_range=(hw, hw),  # static
            weights_sha256=self.digest,
            recipe=f"{RECIPE}-{self.plan.name}",
            versions={
                "torch": torch.__version__,
                "torch_tensorrt": str(self.trt.__version__),
                "tensorrt": tensorrt_version(),
            },
            device={"name": props.name, "compute_capability": f"{props.major}.{props.minor}"},
        )

    def _cached_size(self) -> tuple[int, int] | None:
        """The largest (H, W) with a valid engine in the cache (``irstd export``), or None."""
        root = cache_root(self.options)
        stem = engine_path(root, self.info, self.digest, self.plan.precision, self.tag, (0, 0)).name
        pattern = stem.removesuffix(f"-0x0{ENGINE_SUFFIX}") + f"-*x*{ENGINE_SUFFIX}"
        sizes = []
        for path in root.glob(pattern):
            match = ENGINE_SIZE.search(path.name)
            if match:
                hw = (int(match.group(1)), int(match.group(2)))
                if rebuild_reason(path, self.fingerprint(hw)) is None:
                    sizes.append(hw)
        return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None

    def _engine(self, hw: tuple[int, int]) -> LoadedEngine:
        """The engine of padded size ``hw``: already loaded, loaded from the cache, or built."""
        return self.engines.get(hw, self._load_or_build)

    def _check_capture(self) -> None:
        """Refuse to capture while Torch-TensorRT's own CUDA graphs are on (someone else's
        ``enable_cudagraphs``): each engine would then capture a graph of its own inside
        ours, which CUDA refuses."""
        runtime = getattr(self.trt, "runtime", None)
        get_mode = getattr(runtime, "get_cudagraphs_mode", None)
        if get_mode is not None and get_mode():
            raise BackendError(
                "tensorrt cuda_graphs: Torch-TensorRT's subgraph CUDA-graph mode is on in this process "
                "(torch_tensorrt.runtime.enable_cudagraphs / set_cudagraphs_mode(True)); the backend captures "
                "each engine whole itself: leave that mode off, or run without cuda_graphs"
            )

    def _evict(self, engine: LoadedEngine) -> None:
        """Drop the least recently used engine and its CUDA graph."""
        engine.close()

    def _load_or_build(self, hw: tuple[int, int]) -> LoadedEngine:
        path = engine_path(cache_root(self.options), self.info, self.digest, self.plan.precision, self.tag, hw)

        def build() -> nn.Module:
            compiled, _ = compile_engine(self.trt, self.model, self.stride, hw, self.plan, self.torch_device)
            return compiled

        def save(module: nn.Module, target: Path) -> None:
            example = example_input(self.stride, hw, self.plan.model_dtype, self.torch_device)
            save_engine(self.trt, module, target, example)

        store = EngineStore(path, build, save, lambda p: load_engine(self.trt, p))
        module, origin, cached = store.get(self.fingerprint(hw))
        coverage = graph_coverage(module)
        engine = LoadedEngine(hw, path, module, origin, cached, coverage)
        if self.options.cuda_graphs:  # captured on the engine's first frame
            engine.graph = WholeGraph(module, self._check_capture)
        log.info(
            "TensorRT engine %s %s: %d TensorRT engine(s), %d op(s) in PyTorch",
            path.name, origin, coverage["trt_engines"], coverage["fallback_ops"],
        )
        return engine

    def close(self) -> None:
        """Drop the loaded engines and their CUDA graphs."""
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()

    # --- inference --------------------------------------------------------------------------
    @torch.inference_mode()
    def _prob(self, frame: np.ndarray) -> torch.Tensor:
        x = self.buffers.upload(np.asarray(frame, dtype=np.float32), self.torch_device)
        x, size = gpu_preprocess(x, self.info)
        x = pad_to_min(x, self.min_hw)
        engine = self._engine((int(x.shape[-2]), int(x.shape[-1])))
        out = engine.runner(x.to(self.plan.model_dtype))
        logits = out[0] if isinstance(out, (tuple, list)) else out
        return gpu_postprocess(logits, size)

    def describe(self) -> dict[str, object]:
        current = self.current
        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.plan.precision,
            "sgem": self.plan.sgem,
            "compile_kwargs": sorted(self.plan.compile_kwargs),
            "engine": str(current.path),
            "engine_origin": current.origin,
            "engine_cached": current.cached,  # False: the save failed, built again next start
            "engine_hw": list(current.hw),
            "engines_loaded": [list(hw) for hw in self.engines],
            **self.engines.stats(),
            "shapes": "static, one engine per padded frame size",
            "cuda_graphs": bool(self.options.cuda_graphs),
            # what runs as a graph: each engine's whole program, built or loaded alike
            "cuda_graphs_mode": "whole program per engine (torch.cuda.graph)" if self.options.cuda_graphs else "off",
            "cuda_graphs_captured": sum(1 for e in self.engines.values() if e.graph is not None
                                        and e.graph.graph is not None),
            "torch_tensorrt": str(self.trt.__version__),
            "tensorrt": tensorrt_version(),
            **current.coverage,
        }
