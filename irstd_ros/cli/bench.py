"""``irstd bench``: backend x resolution latency table and the node pipeline overhead."""

from __future__ import annotations

import argparse
import json
import sys

from irstd_ros.cli._options import add_json, positive_float
from irstd_ros.core.constants import SHIPPED_MODELS
from irstd_ros.core.parsing import parse_size
from irstd_ros.errors import ConfigError
from irstd_ros.inference.backends.select import BACKENDS
from irstd_ros.models.config import NAMED_CONFIGS
from irstd_ros.tools.bench import (
    BENCH_VARIANTS,
    BUDGET_S,
    CONFIG_PREFIX,
    FULL_MODELS,
    QUICK_BUDGET_S,
    QUICK_MODELS,
    SHIPPED,
    SHIPPED_PREFIX,
    BenchConfig,
    format_table,
    model_name,
    run_bench,
)
from irstd_ros.tools.gpu_bench import BUDGET_S as GPU_BUDGET_S
from irstd_ros.tools.gpu_bench import MODELS as GPU_MODELS

BENCH_NAMES = (*BACKENDS, *BENCH_VARIANTS)
MODELS_HELP = (
    f"comma-separated models to time: {SHIPPED} (the default shipped model); {SHIPPED_PREFIX}NAME, the "
    f"checkpoint --weights NAME loads ({', '.join(SHIPPED_MODELS)}); a checkpoint file, PATH.safetensors; "
    f"{CONFIG_PREFIX}NAME or a bare config name, that network with random weights "
    f"({', '.join(NAMED_CONFIGS)}). A bare word is never a file, and "
    f"{' and '.join(n for n in SHIPPED_MODELS if n in NAMED_CONFIGS)} alone are configs, not the "
    f"shipped checkpoints (default: {','.join(FULL_MODELS)}; --quick: {','.join(QUICK_MODELS)}; "
    f"--gpu: {','.join(GPU_MODELS)})"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency / FPS / peak memory of every available backend, and the node overhead",
        description="Each backend x model runs in a child process (2 threads). The full run "
        "takes several minutes; --quick is a seconds-long smoke run.",
    )
    add_json(p)
    p.add_argument("--quick", action="store_true", help="tiny sizes, few calls, torch-cpu only")
    p.add_argument("--backends", help=f"comma-separated subset of: {', '.join(BENCH_NAMES)} (default: every one available)")
    p.add_argument("--models", help=MODELS_HELP)
    p.add_argument("--sizes", help="comma-separated WIDTHxHEIGHT (default: 256x256,640x512,1280x1024)")
    p.add_argument("--budget", type=positive_float, metavar="SEC",
                   help=f"timed seconds per cell (default: {BUDGET_S:g}; --quick: {QUICK_BUDGET_S:g}; --gpu: {GPU_BUDGET_S:g})")
    p.add_argument("--no-node", action="store_true", help="skip the node pipeline row")
    p.add_argument(
        "--gpu", action="store_true",
        help="the cuda backend's variants instead (fp32/fp16/bf16, CUDA graphs, torch.compile), "
        "in one process, peak GPU memory per cell (irstd_ros/tools/gpu_bench.py)",
    )
    p.add_argument("--variants", help="with --gpu: comma-separated subset of the variants")
    p.set_defaults(func=run)


def _split(text: str | None, option: str) -> list[str] | None:
    """A comma-separated option as a list (None: not given); one that names nothing (``,,``)
    is a :class:`ConfigError`, not the default."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{option} {text!r}: names nothing; give a comma-separated list")
    return items


def models_option(text: str | None) -> list[str] | None:
    """``--models`` split (None: not given), every item checked up front
    (:func:`irstd_ros.tools.bench.model_name`: one readable error before any cell)."""
    items = _split(text, "--models")
    for item in items or ():
        model_name(item)
    return items


def run(args: argparse.Namespace) -> int:
    if args.gpu and (args.backends or args.quick):
        raise ConfigError("--backends and --quick are for the CPU bench; with --gpu use --variants, --models, --sizes")
    if args.variants is not None and not args.gpu:
        raise ConfigError("--variants needs --gpu (the CPU bench takes --backends)")
    backends = _split(args.backends, "--backends")
    for name in backends or ():
        if name not in BENCH_NAMES:
            raise ConfigError(f"unknown backend {name!r}; valid: {', '.join(BENCH_NAMES)}")
    sizes = [(h, w) for w, h in map(parse_size, _split(args.sizes, "--sizes") or ())] or None  # (H, W)
    models = models_option(args.models)
    if args.gpu:
        return _run_gpu(args, models, sizes)
    cfg = BenchConfig(
        quick=args.quick, backends=backends, models=models, sizes=sizes,
        node=not args.no_node, budget_s=args.budget,
    )
    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = run_bench(cfg, progress)
    print(json.dumps(result) if args.json else format_table(result))
    node = result.get("node")
    return _exit_code(bool(result["backends"]) or bool(node and "skipped" not in node))


def _run_gpu(args: argparse.Namespace, models: list[str] | None, sizes: list[tuple[int, int]] | None) -> int:
    from irstd_ros.tools.bench import FULL_SIZES
    from irstd_ros.tools.gpu_bench import format_gpu_table, run_gpu_bench

    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        result = run_gpu_bench(
            models=models or GPU_MODELS, sizes=sizes or FULL_SIZES,
            variants=_split(args.variants, "--variants"),
            budget_s=args.budget if args.budget is not None else GPU_BUDGET_S, progress=progress,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(json.dumps(result) if args.json else format_gpu_table(result))
    return _exit_code(bool(result["rows"]))


def _exit_code(measured: bool) -> int:
    """0, or 1 with a line on stderr when every cell was skipped or failed (the report,
    printed all the same, says why)."""
    if measured:
        return 0
    print("irstd bench: nothing was measured: every cell was skipped or failed", file=sys.stderr)
    return 1
