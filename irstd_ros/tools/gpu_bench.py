"""GPU benchmark: the ``cuda`` backend's variants x models x frame sizes, batch 1.

Variants (:data:`VARIANTS`): eager FP32 / FP16 / BF16, CUDA-graph replay (FP16, BF16, FP16
with channels_last), ``torch.compile`` (FP16, and FP16 replayed through CUDA graphs), and
FP16 graphs with the widths padded to multiples of 8 (``pad8``, the same logits). Each
cell times ``backend.predict`` end to end, as the node calls it: the normalised frame goes
up from host memory, the network runs, the probabilities come back (wall clock per call,
after warm-up calls; the first call, which pays compile / graph capture / cuDNN autotuning,
is reported apart). p50/p99 are nearest-rank percentiles; FPS = calls / total time; peak GPU
memory is ``torch.cuda.max_memory_allocated`` from a reset before the cell's first call
(the caching allocator's high-water mark: tensors, not the CUDA context).

All cells run in one process, one backend per (variant, model), sizes ascending. Results
are written to ``--out`` after every cell, so a run stopped by its time limit keeps what it
measured; ``--deadline-s`` skips the remaining cells when it is near.

``--device cpu`` (dry runs, tests): the same code on the CPU with tiny sizes; CUDA-graph
variants are reported as skipped and ``torch.compile`` uses its ``eager`` backend.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from irstd_ros.core.parsing import parse_size, positive_float, positive_int
from irstd_ros.core.paths import write_text_atomic
from irstd_ros.tools.bench import (
    FULL_SIZES,
    P50,
    P99,
    ModelSpec,
    load_model,
    percentile,
    resolve_models,
    time_calls,
    unit_frame,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32"},
    "fp16": {"precision": "fp16"},
    "bf16": {"precision": "bf16"},
    "fp16+graphs": {"precision": "fp16", "cuda_graphs": True},
    "bf16+graphs": {"precision": "bf16", "cuda_graphs": True},
    "fp16+nhwc+graphs": {"precision": "fp16", "cuda_graphs": True, "channels_last": True},
    "fp16+compile+graphs": {"precision": "fp16", "compile": True, "cuda_graphs": True},
    "fp16+compile": {"precision": "fp16", "compile": True},
    "fp16+pad8+graphs": {"precision": "fp16", "cuda_graphs": True, "pad_channels": 8},
    "fp16+pad8+compile+graphs": {"precision": "fp16", "compile": True, "cuda_graphs": True, "pad_channels": 8},
}
MODELS = ("paper", "shipped")
DRY_SIZES = ((32, 32), (48, 64))
DRY_MODELS = ("config:tiny",)  # the network, random weights (no note)
BUDGET_S = 1.0  # timed seconds per cell
MAX_CALLS = 3000
WARMUP = 5
DRY_BUDGET_S = 0.05
DRY_MAX_CALLS = 3
DRY_WARMUP = 1
CELL_RESERVE_S = {"compile": 60.0, "default": 8.0}  # a cell is not started with less left


def selection_problems(models: str | None, sizes: str | None, variants: str | None) -> list[str]:
    """What ``--models``, ``--sizes`` and ``--variants`` (comma-separated; None: the
    defaults) would refuse, one line each, without running a cell (the device call's
    preflight reads its bench knobs through this)."""
    from irstd_ros.errors import IrstdError

    split = lambda t: [x.strip() for x in t.split(",") if x.strip()] if t else []  # noqa: E731
    problems = [f"unknown variant {v!r}; valid: {', '.join(VARIANTS)}" for v in split(variants) if v not in VARIANTS]
    for size in split(sizes):
        try:
            parse_size(size)
        except ValueError as exc:
            problems.append(str(exc))
    try:
        resolve_models(split(models))
    except IrstdError as exc:
        problems.append(str(exc))
    return problems


def gpu_machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"host": platform.node(), "torch": torch.__version__, "device": device,
                            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count)
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def _peak_mb(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def bench_cell_rows(
    variant: str, spec: ModelSpec, sizes: Sequence[tuple[int, int]], device: str,
    budget_s: float, warmup: int, max_calls: int, compile_backend: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One backend (variant x model) over the sizes; (rows, its describe())."""
    import torch

    from irstd_ros.inference.backends.base import BackendOptions
    from irstd_ros.inference.backends.torch_cuda import TorchCUDABackend

    model, info = load_model(spec)
    t0 = time.perf_counter()
    backend = TorchCUDABackend(
        model, info, BackendOptions(**VARIANTS[variant]),
        device=None if device.startswith("cuda") else device, compile_backend=compile_backend,
    )
    create_s = time.perf_counter() - t0
    rows = []
    for h, w in sorted(sizes, key=lambda s: s[0] * s[1]):
        frame = unit_frame(h, w)
        _reset_peak(device)
        times, first_ms = time_calls(lambda f=frame, b=backend: b.predict(f), warmup, budget_s, max_calls)
        rows.append({
            "variant": variant, "model": spec.label, "height": h, "width": w,
            "p50_ms": percentile(times, P50), "p99_ms": percentile(times, P99),
            "fps": len(times) / (sum(times) / 1e3), "calls": len(times),
            "first_call_ms": first_ms, "peak_gpu_mem_mb": _peak_mb(device), "create_s": create_s,
        })
    desc = backend.describe()
    del backend
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows, desc


def run_gpu_bench(
    models: Sequence[str] = MODELS,
    sizes: Sequence[tuple[int, int]] = FULL_SIZES,
    variants: Sequence[str] | None = None,
    device: str = "cuda",
    budget_s: float = BUDGET_S,
    warmup: int = WARMUP,
    max_calls: int = MAX_CALLS,
    out: Path | None = None,
    deadline_s: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Every (variant, model) over ``sizes``; the JSON-able result (also written to ``out``)."""
    say = progress or (lambda _m: None)
    start = time.perf_counter()
    on_cuda = device.startswith("cuda")
    compile_backend = "inductor" if on_cuda else "eager"
    variants = list(variants or VARIANTS)
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; valid: {', '.join(VARIANTS)}")
    specs = resolve_models(models)
    result: dict[str, Any] = {
        "machine": gpu_machine(device), "compile_backend": compile_backend,
        "budget_s": budget_s, "warmup": warmup, "rows": [], "skipped": [], "describe": {},
        "models": {m.label: m.note for m in specs}, "complete": False,
        "timing": "wall clock per predict(): host frame up, network, probabilities back (batch 1)",
    }

    def flush() -> None:
        result["elapsed_s"] = round(time.perf_counter() - start, 2)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out, json.dumps(result, indent=1, default=str))  # a kill keeps the last whole one

    # eager and graph variants of every model first, compiled ones last (minutes of compile)
    order = sorted(variants, key=lambda v: "compile" in v)
    for variant in order:
        for spec in specs:
            key = f"{variant}/{spec.label}"
            if VARIANTS[variant].get("cuda_graphs") and not on_cuda:
                result["skipped"].append({"cell": key, "reason": "CUDA graphs need a CUDA device"})
                continue
            reserve = CELL_RESERVE_S["compile" if "compile" in variant else "default"]
            if deadline_s is not None and time.perf_counter() - start > deadline_s - reserve and on_cuda:
                result["skipped"].append({"cell": key, "reason": f"deadline ({deadline_s:.0f} s) near"})
                continue
            say(f"{key} ...")
            try:
                rows, desc = bench_cell_rows(variant, spec, sizes, device, budget_s, warmup, max_calls, compile_backend)
            except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the others
                result["skipped"].append({"cell": key, "reason": f"{type(exc).__name__}: {exc}"[:500]})
                say(f"{key}: failed ({type(exc).__name__}: {exc})")
                flush()
                continue
            result["rows"].extend(rows)
            result["describe"][key] = json.loads(json.dumps(desc, default=str))
            flush()
    result["complete"] = True
    flush()
    return result


def format_gpu_table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"GPU: {m.get('gpu', m.get('device'))}, torch {m.get('torch')}, CUDA {m.get('cuda')}, "
        f"cuDNN {m.get('cudnn')}, triton {m.get('triton')}; batch 1, predict() end to end",
        "",
        "| variant | model | size (WxH) | p50 ms | p99 ms | FPS | peak GPU MiB | first call ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        mem = "-" if r["peak_gpu_mem_mb"] is None else f"{r['peak_gpu_mem_mb']:.0f}"
        lines.append(
            f"| {r['variant']} | {r['model']} | {r['width']}x{r['height']} | {r['p50_ms']:.3f} | "
            f"{r['p99_ms']:.3f} | {r['fps']:.0f} | {mem} | {r['first_call_ms']:.0f} |"
        )
    for s in result["skipped"]:
        lines.append(f"- skipped {s['cell']}: {s['reason']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m irstd_ros.tools.gpu_bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", help="default cuda")
    p.add_argument("--models", help=f"comma-separated (default {','.join(MODELS)})")
    p.add_argument("--sizes", help="comma-separated WIDTHxHEIGHT (default 256x256,640x512,1280x1024)")
    p.add_argument("--variants", help=f"comma-separated subset of {', '.join(VARIANTS)}")
    p.add_argument("--budget", type=positive_float, help=f"seconds per cell (default {BUDGET_S})")
    p.add_argument("--warmup", type=positive_int, help=f"default {WARMUP}")
    p.add_argument("--max-calls", type=positive_int, help=f"default {MAX_CALLS}")
    p.add_argument("--deadline-s", type=positive_float, help="skip cells once this many seconds have passed")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model and sizes, few calls")
    p.add_argument("--out", type=Path, help="JSON result, rewritten after every cell")
    args = p.parse_args(argv)
    split = lambda t: [x.strip() for x in t.split(",") if x.strip()] if t else None  # noqa: E731
    fixed = ("device", "models", "sizes", "budget", "warmup", "max_calls")  # what --dry-run sets itself
    if args.dry_run:
        given = ["--" + k.replace("_", "-") for k in fixed if getattr(args, k) is not None]
        if given:  # they were ignored: a dry run measured the tiny model at its own sizes
            p.error(f"{', '.join(given)}: not with --dry-run (the tiny model at its own sizes, on the CPU)")
        kwargs: dict[str, Any] = dict(models=DRY_MODELS, sizes=DRY_SIZES, device="cpu", budget_s=DRY_BUDGET_S,
                                      warmup=DRY_WARMUP, max_calls=DRY_MAX_CALLS)
    else:
        kwargs = dict(models=split(args.models) or list(MODELS),
                      sizes=[(h, w) for w, h in map(parse_size, split(args.sizes) or [])] or FULL_SIZES,
                      device=args.device or "cuda", budget_s=args.budget or BUDGET_S,
                      warmup=args.warmup or WARMUP, max_calls=args.max_calls or MAX_CALLS)
    result = run_gpu_bench(variants=split(args.variants), out=args.out, deadline_s=args.deadline_s,
                           progress=lambda msg: print(msg, file=sys.stderr, flush=True), **kwargs)
    print(format_gpu_table(result))
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())

