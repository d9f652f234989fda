"""``python -m irstd_ros.tools.demo`` (``make demo``): the whole pipeline on a sample sequence.

1. generate the sample bag (deterministic, a few seconds) -- or take ``--bag``;
2. start ``irstd_node`` as a subprocess, exactly as the launch file does
   (:func:`irstd_ros.ros.launch_args.node_command`, ``config/irstd.yaml``,
   ``image`` remapped to ``/camera/image``);
3. replay the bag's ``/camera/image`` through the running node (reliable QoS; closed
   loop on the node's ``targets`` so a slow CPU drops no frame) while recording the
   node's outputs (and the input, for latency) to a bag;
4. stop the node with SIGINT; score the outputs against the truth; render an
   annotated video and a contact sheet.

Writes ``out/demo/``: ``metrics.json``, ``pd_fa.png``, ``demo.mp4``,
``contact_sheet.png``, ``outputs/`` (the recorded bag), ``sample/`` (the input bag),
``node.log``. Options are checked before anything runs. Any failure: one readable line on
stderr, with exit code 2 under ``irstd demo`` (``irstd demo: error: ...``, as every
subcommand) and exit code 1 under ``python -m irstd_ros.tools.demo`` (``demo: error: ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from irstd_ros.bags.evaluate import EvalBagConfig, evaluate_bag, plot_over_time, write_json
from irstd_ros.bags.generate import GenerateConfig, generate_bag
from irstd_ros.bags.io import IMAGE_TOPIC, IMAGE_TYPE, BagReader, check_replaceable
from irstd_ros.bags.record import RecordConfig, Recorder
from irstd_ros.bags.render import RenderConfig, render
from irstd_ros.bags.replay import ReplayConfig, replay
from irstd_ros.bags.rosutil import ros_session
from irstd_ros.core.constants import (
    DETECTION_OUTPUTS,
    TARGETS_TOPIC,
    TRACKING_OUTPUTS,
    VALID_BACKENDS,
    WEIGHTS_HELP,
)
from irstd_ros.core.parsing import parse_range
from irstd_ros.core.paths import output_dir_problem
from irstd_ros.errors import ConfigError, IrstdError, one_line
from irstd_ros.ros.launch_args import default_params_file, node_command
from irstd_ros.sim.sequence import SequenceConfig
from irstd_ros.testing.node_process import NodeProcess, NodeProcessError, node_executable

log = logging.getLogger("irstd_ros.tools.demo")

DEFAULT_OUT = Path("out/demo")
NODE_NAME = "irstd_node"
OUTPUT_TOPICS = tuple(f"/{t}" for t in (*DETECTION_OUTPUTS, *TRACKING_OUTPUTS))
# the replay waits for it after each frame (closed loop); the node publishes the mask after
# it, so the drain waits for every output topic, not for it alone
SYNC_TOPIC = f"/{TARGETS_TOPIC}"
# The sample: 10 s of 640x512 8-bit cloudy sky at 10 fps: 4 targets (one entering, one
# leaving) at SNR 10-16 over local clutter (requested: in the 8-bit frames about a fifth
# of the instances clip at 255; docs/demo.md), 2 dim point targets at SNR 4-6, a pair
# that crosses mid-way (SNR 10-16), flickering clutter (hot spots for 1-3 frames, not
# targets), and a target-free stretch, the last fifth of the sample (frames 80-99), where
# any detection is a false alarm.
SAMPLE_SNR = (10.0, 16.0)
SAMPLE_FRAMES = 100
QUIET_FRACTION = 5  # the last 1/QUIET_FRACTION of the sample is background only


def sample_quiet(frames: int) -> tuple[int, int]:
    """The sample's target-free stretch for a sample of ``frames`` frames: its last fifth
    (``frames // 5`` frames, at least one from 2 frames on; none in a 1-frame sample, which
    would then hold no target at all), so that ``--frames`` moves it with the end."""
    quiet = max(frames // QUIET_FRACTION, 1) if frames >= 2 else 0
    return (frames - quiet, frames)


SAMPLE_SEQUENCE = SequenceConfig(
    width=640, height=512, frames=SAMPLE_FRAMES, fps=10.0, scene="sky", n_targets=4,
    snr=SAMPLE_SNR, seed=7, dim_targets=2, dim_snr=(4.0, 6.0), crossings=1, flicker_rate=0.2,
    quiet=sample_quiet(SAMPLE_FRAMES),
)
NODE_START_TIMEOUT_S = 90.0  # model loading on a busy 2-core machine
NODE_EXIT_TIMEOUT_S = 15.0
SYNC_TIMEOUT_S = 20.0  # longest wait for one frame's outputs
DRAIN_TIMEOUT_S = 10.0  # after the replay, for the last outputs


class DemoError(IrstdError):
    """A step of the demo failed."""


@dataclass(frozen=True)
class DemoConfig:
    out_dir: Path = DEFAULT_OUT
    sequence: SequenceConfig = SAMPLE_SEQUENCE
    bag: Path | None = None  # use this bag instead of generating the sample
    params_file: Path = field(default_factory=default_params_file)
    weights: Path | None = None  # model.path for the node (default: the shipped model)
    backend: str | None = None  # model.backend for the node (default: the params file's)
    rate: float = 1.0
    ros_args: tuple[str, ...] = field(default_factory=tuple)  # extra node --ros-args


def node_command_line(cfg: DemoConfig) -> list[str]:
    """The node's command line, as the launch file builds it."""
    extra = list(cfg.ros_args)
    if cfg.weights is not None:
        from irstd_ros.inference.detector import resolve_model_path

        extra += ["-p", f"model.path:={resolve_model_path(cfg.weights).resolve()}"]
    if cfg.backend:
        extra += ["-p", f"model.backend:={cfg.backend}"]
    exe = node_executable()
    cmd = node_command(
        cfg.params_file,
        image_topic=IMAGE_TOPIC,
        namespace="",
        executable=exe[0],
        extra_ros_args=extra,
    )
    return exe + cmd[1:]


def _wait_for_node(ros_node: object, node: NodeProcess, recorder: Recorder) -> None:
    """Until the node subscribes to the image topic and its outputs are being recorded."""
    image = ros_node.resolve_topic_name(IMAGE_TOPIC)  # type: ignore[attr-defined]

    def ready() -> bool:
        subscribers = ros_node.get_subscriptions_info_by_topic(image)  # type: ignore[attr-defined]
        return any(i.node_name == NODE_NAME for i in subscribers) and not recorder.missing

    try:
        node.wait_for(ready, NODE_START_TIMEOUT_S, "node start")
    except NodeProcessError:
        if not node.alive():
            raise
        raise DemoError(
            f"the node was not ready after {NODE_START_TIMEOUT_S:.0f} s "
            f"(missing: {', '.join(recorder.missing) or 'image subscription'}): {node.tail()}"
        ) from None


def _drain(recorder: Recorder, frames: int, node: NodeProcess) -> None:
    """Until the sync topic and every other output topic the node has published on hold
    ``frames`` messages each (at most :data:`DRAIN_TIMEOUT_S`): the last frame's mask comes
    after its sync message, and the recording closes when this returns."""
    sync = recorder.node.resolve_topic_name(SYNC_TOPIC)
    outputs = [recorder.node.resolve_topic_name(t) for t in OUTPUT_TOPICS]

    def drained() -> bool:
        counts = recorder.counts  # a copy per read: once per look
        got = [counts.get(t, 0) for t in outputs]
        return counts.get(sync, 0) >= frames and all(n == 0 or n >= frames for n in got)

    with contextlib.suppress(NodeProcessError):  # a timeout: what came is scored
        node.wait_for(drained, DRAIN_TIMEOUT_S, "drain")
    node.check_alive()


def run_demo(cfg: DemoConfig) -> dict:
    """Run every step; returns the metrics (also written to ``metrics.json``)."""
    t_start = time.perf_counter()
    out = cfg.out_dir
    # both bags refused up front (another folder where one goes), before anything is written
    for bag_dir in (out / "outputs",) if cfg.bag is not None else (out / "sample", out / "outputs"):
        check_replaceable(bag_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    if cfg.bag is None:
        bag = out / "sample"
        print(f"[1/5] generating the sample sequence -> {bag}", flush=True)
        generate_bag(GenerateConfig(bag, cfg.sequence, "mcap", overwrite=True))
    else:
        bag = cfg.bag
        print(f"[1/5] using the bag {bag}", flush=True)
    with BagReader(bag) as reader:
        reader.require(IMAGE_TOPIC, IMAGE_TYPE)
        frames = reader.topics[IMAGE_TOPIC].count
    timings["generate_s"] = time.perf_counter() - t

    outputs = out / "outputs"
    cmd = node_command_line(cfg)
    print(f"[2/5] starting the node: {' '.join(cmd)}", flush=True)
    t = time.perf_counter()
    node = NodeProcess(cmd, out / "node.log")
    try:
        with ros_session("irstd_demo") as ros_node:
            recorder = Recorder(
                ros_node,
                RecordConfig(
                    outputs,
                    topics=(IMAGE_TOPIC, *OUTPUT_TOPICS),
                    known_types=((IMAGE_TOPIC, IMAGE_TYPE),),
                    compress=True,
                    overwrite=True,
                    progress=False,
                ),
            )
            try:
                _wait_for_node(ros_node, node, recorder)
                timings["node_start_s"] = time.perf_counter() - t
                print(
                    f"[3/5] replaying {frames} frames through the node (rate {cfg.rate})",
                    flush=True,
                )
                t = time.perf_counter()
                stats = replay(
                    ReplayConfig(
                        bag,
                        rate=cfg.rate,
                        qos="reliable",
                        sync_topic=SYNC_TOPIC,
                        sync_timeout=SYNC_TIMEOUT_S,
                        progress=True,
                    ),
                    node=ros_node,
                    should_stop=lambda: node.proc.poll() is not None,
                )
                node.check_alive()
                _drain(recorder, frames, node)
                timings["replay_s"] = time.perf_counter() - t
            finally:
                recorder.close()
            recorder.raise_if_failed()  # a write failed while the queue was written out
            counts = recorder.counts
    finally:
        code = node.stop(signal.SIGINT, NODE_EXIT_TIMEOUT_S)
    if code not in (0, -signal.SIGINT):
        raise DemoError(f"the node exited with code {code} after SIGINT: {node.tail()}")
    processed = counts.get(SYNC_TOPIC, 0)
    print(f"      node answered {processed}/{stats.published} frames, exited cleanly", flush=True)

    print("[4/5] scoring the outputs against the truth", flush=True)
    result = evaluate_bag(EvalBagConfig(bag, outputs=outputs))
    plot_over_time(result, out / "pd_fa.png")
    print("[5/5] rendering the annotated video and the contact sheet", flush=True)
    t = time.perf_counter()
    video = render(
        RenderConfig(bag, out / "demo.mp4", outputs=outputs, sheet=out / "contact_sheet.png")
    )
    timings["render_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start
    result["demo"] = {
        "command": cmd,
        "frames_published": stats.published,
        "frames_answered": processed,
        "sync_timeouts": stats.sync_timeouts,
        "node_fps": processed / timings["replay_s"] if timings.get("replay_s") else None,
        "video": str(video.video),
        "timings": timings,
    }
    write_json(result, out / "metrics.json")
    return result


def summary(result: dict, out: Path) -> str:
    """The closing table."""
    from irstd_ros.bags.report import format_table

    d = result["demo"]
    files = [
        ("metrics", out / "metrics.json"),
        ("Pd/Fa plot", out / "pd_fa.png"),
        ("video", Path(d["video"])),
        ("contact sheet", out / "contact_sheet.png"),
        ("outputs bag", out / "outputs"),
        ("node log", out / "node.log"),
    ]
    fps = f"{d['node_fps']:.1f}" if d["node_fps"] else "n/a"
    lines = [
        "",
        format_table(result),
        f"node speed  {fps} frames/s (closed loop); demo took {d['timings']['total_s']:.0f} s",
        "",
        *(f"{name:14s}{path}" for name, path in files),
    ]
    return "\n".join(lines)


DESCRIPTION = __doc__.split("\n")[0]


SAMPLE_OPTIONS = ("frames", "scene", "seed", "snr")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's options (``python -m irstd_ros.tools.demo`` and ``irstd demo``)."""
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--bag", type=Path, help="replay this bag instead of generating the sample")
    p.add_argument("--weights", type=Path, help=f"for the node: {WEIGHTS_HELP}")
    p.add_argument("--backend", help="node inference backend (default: config/irstd.yaml's)")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor (default: %(default)g)")
    # the generated sample's: None (the sample's own) until given, so --bag can refuse them
    p.add_argument(
        "--frames",
        type=int,
        help=f"sample length, its last fifth without targets (default {SAMPLE_SEQUENCE.frames})",
    )
    p.add_argument("--scene", help=f"sample scene: sky, sea, ground (default {SAMPLE_SEQUENCE.scene})")
    p.add_argument("--seed", type=int, help=f"sample seed (default {SAMPLE_SEQUENCE.seed})")
    p.add_argument(
        "--snr", help="sample target SNR, N or LO:HI (default {}:{})".format(*SAMPLE_SEQUENCE.snr)
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m irstd_ros.tools.demo", description=DESCRIPTION)
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m irstd_ros.tools.demo``: any failure is one line (``demo: error: ...``), exit 1."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (IrstdError, OSError) as exc:
        print(f"demo: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130


def _check_node_model(weights: Path | None, backend: str | None) -> None:
    """What the node would refuse at its start, refused before the sample is generated: a
    backend name it does not know, a checkpoint missing, damaged or of another architecture
    (its metadata; :class:`ConfigError` / :class:`~irstd_ros.errors.CheckpointError`)."""
    from irstd_ros.checkpoint import read_info
    from irstd_ros.inference.detector import resolve_model_path

    if backend is not None and backend not in VALID_BACKENDS:
        raise ConfigError(f"--backend: unknown backend {backend!r}; valid: {', '.join(VALID_BACKENDS)}")
    if weights is not None:
        read_info(resolve_model_path(weights))


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """The demo's configuration, every option checked (:class:`ConfigError`): before the
    sample is generated and the node started."""
    if not 0 < args.rate < math.inf:
        raise ConfigError(f"--rate must be > 0, got {args.rate:g}")
    given = [f"--{name}" for name in SAMPLE_OPTIONS if getattr(args, name) is not None]
    if args.bag is not None and given:  # they shape the generated sample only
        raise ConfigError(f"{', '.join(given)}: options of the generated sample; not with --bag")
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    problem = output_dir_problem(args.out)
    if problem:
        raise ConfigError(f"--out {problem}")
    _check_node_model(args.weights, args.backend)
    sequence = SAMPLE_SEQUENCE
    if args.frames is not None:  # the target-free stretch stays the sample's last fifth
        sequence = replace(sequence, frames=args.frames, quiet=sample_quiet(args.frames))
    for name in ("scene", "seed"):
        if getattr(args, name) is not None:
            sequence = replace(sequence, **{name: getattr(args, name)})
    if args.snr is not None:
        try:
            sequence = replace(sequence, snr=parse_range(args.snr))
        except ConfigError as exc:
            raise ConfigError(f"--snr: {exc}") from None
    if args.bag is None:  # the sample is generated: --scene, --snr
        try:
            sequence.validate()
        except ConfigError as exc:
            raise ConfigError(f"sample sequence: {exc}") from None
    return DemoConfig(
        out_dir=args.out,
        sequence=sequence,
        bag=args.bag,
        weights=args.weights,
        backend=args.backend,
        rate=args.rate,
    )


def run(args: argparse.Namespace) -> int:
    """``irstd demo``: errors are raised, for the CLI's one line (see :func:`main`)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    # keep the demo's ROS traffic on this machine unless the user chose otherwise
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        result = run_demo(cfg)
    except subprocess.SubprocessError as exc:
        raise DemoError(str(exc)) from exc
    print(summary(result, cfg.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
