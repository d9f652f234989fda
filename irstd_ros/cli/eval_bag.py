"""``irstd eval-bag``: Pd, Fa, IoU (and latency) of a run against the truth in a bag, and
track-level metrics (Pd, false tracks per minute, ID switches, MOTA, IDF1) with and
without tracking."""

from __future__ import annotations

import argparse
from pathlib import Path

from irstd_ros.bags.evaluate import (
    EvalBagConfig,
    check_plot_path,
    evaluate_bag,
    plot_over_time,
    write_json,
)
from irstd_ros.bags.io import TRUTH_MASK_TOPIC
from irstd_ros.bags.report import format_table
from irstd_ros.cli._options import (
    add_backend,
    add_image_topic,
    add_outputs_ns,
    add_weights,
    check_distinct_paths,
    check_output_dir,
    check_output_file,
    network_options_given,
    non_negative_float,
    positive_float,
    tracker_threshold,
    unit_interval,
    weights_input,
)
from irstd_ros.core.constants import OWN_THRESHOLD
from irstd_ros.errors import ConfigError
from irstd_ros.tracking.metrics import DEFAULT_MATCH_PX, DEFAULT_WARMUP_S
from irstd_ros.tracking.tracker import TrackerConfig

STDOUT = "-"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-bag",
        help="score recorded outputs (or the detector) against a bag's truth",
        description="Score detections against the truth of a generated bag, matching frames by "
        "header stamp: from recorded node outputs (--outputs) or by running the detector.",
    )
    p.add_argument("--truth", type=Path, required=True, help="bag with the image and truth topics")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--outputs", type=Path, help="bag of recorded node outputs")
    src.add_argument("--run-detector", action="store_true", help="run the detector over the frames")
    add_weights(p, "for --run-detector")
    add_backend(p, "for --run-detector")
    p.add_argument(
        "--save-outputs",
        type=Path,
        metavar="BAG",
        help="with --run-detector: also write the outputs as the node would",
    )
    add_image_topic(p)
    p.add_argument("--truth-mask-topic", default=TRUTH_MASK_TOPIC,
                   help="the truth's mask topic in --truth (default: %(default)s)")
    p.add_argument("--mask-topic", help="output mask topic (default: the */mask Image topic)")
    add_outputs_ns(p)
    p.add_argument(
        "--json",
        nargs="?",
        const=STDOUT,
        metavar="FILE",
        help="print the metrics as one JSON object instead of the table, or write them to FILE "
        "(the table printed too)",
    )
    p.add_argument("--plot", type=Path, metavar="PNG", help="Pd and Fa over time")
    t = p.add_argument_group("tracking metrics (need the truth's target ids)")
    t.add_argument("--no-tracking", action="store_true", help="skip the tracking metrics")
    t.add_argument(
        "--match-px", type=positive_float, default=DEFAULT_MATCH_PX,
        help="largest truth-to-hypothesis distance of a match, px (default %(default)s)",
    )
    t.add_argument(
        "--warmup-s", type=non_negative_float, default=DEFAULT_WARMUP_S,
        help="Pd after warm-up counts targets visible this long (default %(default)s s)",
    )
    # the tracker's options: None until given; any given runs the tracker over the
    # detections, also where the outputs hold the node's recorded tracks
    d = TrackerConfig()
    t.add_argument("--gate-px", type=positive_float, help=f"tracker gate, px (default {d.gate_px})")
    t.add_argument(
        "--init-speed", type=positive_float, metavar="PX_S",
        help=f"expected target speed, px/s (the node's tracking.init_speed; default {d.init_speed})",
    )
    t.add_argument(
        "--confirm", type=int, nargs=2, metavar=("M", "N"),
        help=f"M-of-N confirmation (default {d.confirm_m} {d.confirm_n})",
    )
    t.add_argument("--max-coast-s", type=non_negative_float, help=f"tracker coast, s (default {d.max_coast_s})")
    t.add_argument(
        "--max-coast-long-s", type=non_negative_float,
        help=f"longest coast of a track held that long, s (default {d.max_coast_long_s}; 0: max-coast-s)",
    )
    t.add_argument(
        "--min-score", type=unit_interval, help=f"to confirm a track (default {d.min_score})"
    )
    t.add_argument(
        "--candidate-threshold", type=tracker_threshold, metavar="P",
        help="with --run-detector: also feed the tracker the sub-threshold components down to "
        "probability P (low-SNR confirmation, the node's tracking.candidate_threshold; "
        "default with --run-detector: 'own', the model's own, as the node); 0: off",
    )
    t.add_argument(
        "--gated-threshold", type=tracker_threshold, metavar="P",
        help="with --run-detector: also feed the tracker the components down to probability P "
        "below the candidates, for confirmed tracks' gates only (the node's "
        "tracking.gated_threshold; default with --run-detector: 'own', the model's own); 0: off",
    )
    p.set_defaults(func=run)


TRACKER_OPTIONS = {  # option -> TrackerConfig field(s)
    "gate_px": ("gate_px",), "init_speed": ("init_speed",), "confirm": ("confirm_m", "confirm_n"), "max_coast_s": ("max_coast_s",),
    "max_coast_long_s": ("max_coast_long_s",), "min_score": ("min_score",),
}


def tracker_from_args(args: argparse.Namespace) -> TrackerConfig | None:
    """The tracker the options describe (the node's defaults where not given), or None when
    none was given: the recorded tracks are then scored where the outputs hold them."""
    given: dict[str, object] = {}
    for option, fields in TRACKER_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            given.update(zip(fields, value if len(fields) > 1 else (value,), strict=True))
    return TrackerConfig(**given) if given else None  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    given = network_options_given(args)
    if not args.run_detector and given:  # recorded outputs: no model runs, so they would be ignored
        raise ConfigError(f"{given[0]} needs --run-detector")
    tracker = tracker_from_args(args)
    if tracker is not None and args.no_tracking:  # no tracks are scored: they would be ignored
        raise ConfigError("the tracker's options (--gate-px, --confirm, ...) are not for --no-tracking")
    json_file = Path(args.json) if args.json and args.json != STDOUT else None
    check_output_file(json_file, "--json")
    check_output_file(args.plot, "--plot")
    if args.plot is not None:
        check_plot_path(args.plot)
    check_output_dir(args.save_outputs, "--save-outputs")
    if args.save_outputs is not None and args.save_outputs.exists():  # a new bag, never overwritten
        raise ConfigError(f"--save-outputs {args.save_outputs} exists; remove it or choose another path")
    check_distinct_paths(
        [(args.save_outputs, "--save-outputs"), (json_file, "--json"), (args.plot, "--plot")],
        inputs=[(args.truth, "--truth"), (args.outputs, "--outputs"), (weights_input(args.weights), "--weights")],
    )
    cfg = EvalBagConfig(
        truth=args.truth,
        outputs=args.outputs,
        run_detector=args.run_detector,
        weights=args.weights,
        backend=args.backend,
        image_topic=args.image_topic,
        truth_mask_topic=args.truth_mask_topic,
        mask_topic=args.mask_topic,
        outputs_ns=args.outputs_ns,
        save_outputs=args.save_outputs,
        progress=True,
        tracking=not args.no_tracking,
        tracker=tracker,
        match_px=args.match_px,
        warmup_s=args.warmup_s,
        candidate_threshold=(
            args.candidate_threshold
            if args.candidate_threshold is not None
            else OWN_THRESHOLD if args.run_detector else 0.0
        ),
        gated_threshold=(
            args.gated_threshold
            if args.gated_threshold is not None
            else OWN_THRESHOLD if args.run_detector else 0.0
        ),
    )
    result = evaluate_bag(cfg)
    if args.plot:
        plot_over_time(result, args.plot)
    if args.json == STDOUT:
        print(write_json(result, None))
        return 0
    if args.json:
        write_json(result, Path(args.json))
    print(format_table(result))
    return 0
