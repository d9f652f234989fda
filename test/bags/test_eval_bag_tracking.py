"""eval-bag's tracking metrics on hand-made bags: two targets with ids, a missed stretch,
flickering false alarms; tracks from the tracker run offline and recorded by the node."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from irstd_ros.bags.evaluate import EvalBagConfig, evaluate_bag, run_tracker
from irstd_ros.bags.io import (
    IMAGE_TOPIC,
    TRUTH_MASK_TOPIC,
    TRUTH_TARGETS_TOPIC,
    BagReader,
    BagWriter,
    Box,
    detections_msg,
    image_msg,
    targets_msg,
)
from irstd_ros.bags.render import RenderConfig, render
from irstd_ros.bags.report import format_table
from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.stamps import stamp_ns
from irstd_ros.core.targets import Target
from irstd_ros.errors import BagError, ConfigError
from irstd_ros.inference.detector import DetectionResult
from irstd_ros.models import named_config
from irstd_ros.tracking.tracker import TrackerConfig

H, W = 48, 64
T0 = 1_000_000_000_000
STEP = 100_000_000  # 10 fps
TENTATIVE = TrackerConfig().confirm_m - 1  # frames a track is tentative (default M-of-N)
FRAMES = 30
MISSED = range(10, 14)  # target 0 not detected: 0.4 s
FALSE_EVERY = 3  # a false alarm, somewhere new, every 3rd frame


def position(tid: int, i: int) -> tuple[int, int]:
    return (5 + i, 10) if tid == 0 else (50 - i, 35)


def box(tid: int, i: int) -> tuple[int, int, int, int]:
    x, y = position(tid, i)
    return x - 1, y - 1, 3, 3


def write_truth(path: Path, ids: bool = True) -> Path:
    with BagWriter(path) as w:
        for i in range(FRAMES):
            s = T0 + i * STEP
            mask = np.zeros((H, W), np.uint8)
            boxes = []
            for tid in (0, 1):
                x, y, bw, bh = box(tid, i)
                mask[y : y + bh, x : x + bw] = 255
                cx, cy = position(tid, i)
                boxes.append(Box(x, y, bw, bh, id=str(tid) if ids else "", centroid_x=cx, centroid_y=cy))
            w.write(IMAGE_TOPIC, s, image_msg(w.store, mask // 2, "mono8", s, "cam"))
            w.write(TRUTH_MASK_TOPIC, s, image_msg(w.store, mask, "mono8", s, "cam"))
            w.write(TRUTH_TARGETS_TOPIC, s, detections_msg(w.store, boxes, s, "cam"))
    return path


def detected(i: int) -> list[Target]:
    rng = np.random.default_rng(i)
    out = []
    for tid in (0, 1):
        if tid == 0 and i in MISSED:
            continue
        out.append(tuple(box(tid, i)))
    if i % FALSE_EVERY == 0:
        fx, fy = rng.integers(20, 40), rng.integers(18, 28)
        out.append((int(fx), int(fy), 1, 1))
    return [
        Target(k, 0.9, x, y, bw, bh, bw * bh, x + (bw - 1) / 2, y + (bh - 1) / 2, 200.0, 180.0, 50.0, 9.0)
        for k, (x, y, bw, bh) in enumerate(out)
    ]


def write_outputs(path: Path, tracks: dict[int, list[Box]] | None = None) -> Path:
    with BagWriter(path) as w:
        for i in range(FRAMES):
            s = T0 + i * STEP
            w.write("/targets", s, targets_msg(w.store, detected(i), s, "cam"))
            if tracks is not None:
                w.write("/tracks", s, detections_msg(w.store, tracks.get(i, []), s, "cam"))
    return path


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("trk")
    return write_truth(d / "truth"), write_outputs(d / "outputs")


def test_tracking_metrics_with_and_without_tracking(bags):
    truth, outputs = bags
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    t = r["tracking"]
    assert t["tracks_source"] == "tracker"
    det, trk = t["detections"], t["tracks"]
    n_false = len(range(0, FRAMES, FALSE_EVERY))
    assert det["truth_instances"] == trk["truth_instances"] == 2 * FRAMES
    assert det["pd"] == pytest.approx((2 * FRAMES - len(MISSED)) / (2 * FRAMES))
    assert det["false_tracks"] == n_false  # every false detection is its own "track"
    assert det["false_tracks_per_min"] == pytest.approx(n_false / (FRAMES * 0.1 / 60))
    # tracks: the flicker never confirms, the missed stretch is coasted through, and the
    # only misses are the tentative frames of each track (M - 1 of M-of-N)
    assert trk["false_tracks"] == 0 and trk["id_switches"] == 0
    assert trk["pd"] == pytest.approx((2 * FRAMES - 2 * TENTATIVE) / (2 * FRAMES))
    assert trk["pd_after_warmup"] == 1.0 and det["pd_after_warmup"] < 1.0
    assert trk["idf1"] > 0.9 and trk["mota"] > det["mota"]
    text = format_table(r)
    assert "tracking" in text and "IDF1" in text and "tracker" in text


def test_recorded_tracks_are_scored_and_rendered(bags, tmp_path):
    truth, _ = bags
    recorded = {  # the node's tracks: ids 7 and 9, one switch to id 8 at frame 20
        i: [
            Box(*box(0, i), id="7", centroid_x=position(0, i)[0], centroid_y=position(0, i)[1]),
            Box(*box(1, i), id="9" if i < 20 else "8",
                centroid_x=position(1, i)[0], centroid_y=position(1, i)[1]),
        ]
        for i in range(FRAMES)
    }
    outputs = write_outputs(tmp_path / "outputs", recorded)
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    trk = r["tracking"]["tracks"]
    assert r["tracking"]["tracks_source"] == "recorded"
    assert trk["pd"] == 1.0 and trk["id_switches"] == 1 and trk["false_tracks"] == 0
    assert trk["id_switches_per_100_target_s"] == pytest.approx(100 / (2 * FRAMES * 0.1))
    video = render(RenderConfig(truth, tmp_path / "v.gif", outputs=outputs, max_frames=3))
    assert video.frames == 3


def test_tracker_options_given_retrack_a_recording_that_holds_tracks(bags, tmp_path):
    # a recording with the node's tracks (`make demo`'s) scored with other tracker settings
    # (`eval-bag --outputs OUT --confirm 1 1`): the tracker runs with them over the recorded
    # detections; they were ignored and the recorded tracks scored as if the options were not
    truth, _ = bags
    recorded = {i: [Box(*box(0, i), id="7", centroid_x=position(0, i)[0], centroid_y=position(0, i)[1])]
                for i in range(FRAMES)}  # target 1 never tracked by "the node"
    outputs = write_outputs(tmp_path / "outputs", recorded)
    one_of_one = TrackerConfig(confirm_m=1, confirm_n=1)
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs, tracker=one_of_one))["tracking"]
    assert r["tracks_source"] == "tracker" and r["tracker"]["confirm_m"] == 1
    assert r["tracks"]["pd"] > 0.9  # both targets tracked from their first frame
    from irstd_ros.cli.main import main

    assert main(["eval-bag", "--truth", str(truth), "--outputs", str(outputs), "--confirm", "1", "1",
                 "--json", str(tmp_path / "m.json")]) == 0
    import json

    assert json.loads((tmp_path / "m.json").read_text())["tracking"]["tracks_source"] == "tracker"
    assert main(["eval-bag", "--truth", str(truth), "--outputs", str(outputs),  # without: the node's
                 "--json", str(tmp_path / "n.json")]) == 0
    assert json.loads((tmp_path / "n.json").read_text())["tracking"]["tracks"]["pd"] == 0.5


def test_tracker_options_are_refused_with_no_tracking(bags, capsys):
    from irstd_ros.cli.main import main

    truth, outputs = bags
    assert main(["eval-bag", "--truth", str(truth), "--outputs", str(outputs), "--no-tracking",
                 "--gate-px", "5"]) == 2
    assert "not for --no-tracking" in capsys.readouterr().err


def test_tracking_metrics_can_be_switched_off(bags, tmp_path):
    truth, outputs = bags
    assert evaluate_bag(EvalBagConfig(truth, outputs=outputs, tracking=False))["tracking"] is None


class CandidateDetector:
    """Detects target 0; target 1 only as a sub-threshold candidate, when asked for."""

    def __init__(self) -> None:
        self.info = CheckpointInfo(named_config("tiny"))
        self.candidate_threshold: float | None = None
        self.frame = 0

    def detect(self, frame: np.ndarray) -> DetectionResult:
        i, self.frame = self.frame, self.frame + 1
        t0, t1 = (detected_target(tid, i) for tid in (0, 1))
        cands = [t1] if self.candidate_threshold is not None else []
        mask = np.zeros(frame.shape, bool)
        return DetectionResult(mask.astype(np.float32), mask, [t0], {}, cands)


def detected_target(tid: int, i: int) -> Target:
    x, y, bw, bh = box(tid, i)
    cx, cy = position(tid, i)
    score = 0.9 if tid == 0 else 0.3
    return Target(tid, score, x, y, bw, bh, bw * bh, cx, cy, 200.0, 180.0, 50.0, 9.0)


def test_candidates_reach_the_tracker_only_with_a_candidate_threshold(bags, monkeypatch):
    from irstd_ros.inference import detector as det_mod

    monkeypatch.setattr(
        det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: CandidateDetector())
    )
    truth, outputs = bags
    off = evaluate_bag(EvalBagConfig(truth, run_detector=True))["tracking"]
    on = evaluate_bag(EvalBagConfig(truth, run_detector=True, candidate_threshold=0.2))
    t = on["tracking"]
    assert off["candidate_threshold"] is None and t["candidate_threshold"] == 0.2
    assert off["detections"]["pd"] == t["detections"]["pd"] == 0.5  # detections unchanged
    assert off["tracks"]["pd"] == pytest.approx((FRAMES - TENTATIVE) / (2 * FRAMES))
    assert t["tracks"]["pd"] == pytest.approx((2 * FRAMES - 2 * TENTATIVE) / (2 * FRAMES))
    assert t["tracks"]["false_tracks"] == 0 and t["tracks"]["id_switches"] == 0
    assert "candidates > 0.2" in format_table(on)
    with pytest.raises(ConfigError, match="run-detector"):
        evaluate_bag(EvalBagConfig(truth, outputs=outputs, candidate_threshold=0.2))


def test_tracker_thresholds_left_to_the_model_are_its_own(bags, monkeypatch):
    from irstd_ros.inference import detector as det_mod

    detector = CandidateDetector()
    detector.info = CheckpointInfo(named_config("tiny"), candidate_threshold=0.53, gated_threshold=0.41)
    monkeypatch.setattr(det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: detector))
    truth, _ = bags
    t = evaluate_bag(EvalBagConfig(truth, run_detector=True, candidate_threshold=-1.0, gated_threshold=-1.0))
    assert (t["tracking"]["candidate_threshold"], t["tracking"]["gated_threshold"]) == (0.53, 0.41)
    assert (detector.candidate_threshold, detector.gated_threshold) == (0.53, 0.41)
    with pytest.raises(ConfigError, match="must be below the candidate threshold 0.3"):
        evaluate_bag(EvalBagConfig(truth, run_detector=True, candidate_threshold=0.3, gated_threshold=-1.0))


FAINT_FROM = 8  # target 1 is detected until this frame, then only as a gated component


class GatedDetector:
    """Detects target 0; target 1 until FAINT_FROM, then only as a gated component below
    the candidates, when asked for."""

    def __init__(self) -> None:
        self.info = CheckpointInfo(named_config("tiny"))
        self.candidate_threshold: float | None = None
        self.gated_threshold: float | None = None
        self.frame = 0

    def detect(self, frame: np.ndarray) -> DetectionResult:
        i, self.frame = self.frame, self.frame + 1
        t0, t1 = (detected_target(tid, i) for tid in (0, 1))
        faint = i >= FAINT_FROM
        gated = [t1] if faint and self.gated_threshold is not None else []
        mask = np.zeros(frame.shape, bool)
        return DetectionResult(
            mask.astype(np.float32), mask, [t0] if faint else [t0, t1], {}, [], gated
        )


def test_gated_components_reach_the_tracker_only_with_a_gated_threshold(bags, monkeypatch):
    from irstd_ros.inference import detector as det_mod

    monkeypatch.setattr(
        det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: GatedDetector())
    )
    truth, outputs = bags
    short = TrackerConfig(max_coast_long_s=0.0)  # coasting alone would not bridge the rest
    off = evaluate_bag(EvalBagConfig(truth, run_detector=True, tracker=short))["tracking"]
    on = evaluate_bag(EvalBagConfig(truth, run_detector=True, tracker=short, gated_threshold=0.05))
    t = on["tracking"]
    assert off["gated_threshold"] is None and t["gated_threshold"] == 0.05
    assert off["detections"]["pd"] == t["detections"]["pd"]  # detections unchanged
    # target 1 is tracked to the end only with the gated components (1 s of coasting without)
    coasted = round(short.max_coast_s / (STEP / 1e9))
    lost = FRAMES - FAINT_FROM - coasted
    assert off["tracks"]["pd"] == pytest.approx((2 * FRAMES - 2 * TENTATIVE - lost) / (2 * FRAMES))
    assert t["tracks"]["pd"] == pytest.approx((2 * FRAMES - 2 * TENTATIVE) / (2 * FRAMES))
    assert t["tracks"]["false_tracks"] == 0 and t["tracks"]["id_switches"] == 0
    assert "gated > 0.05" in format_table(on)
    with pytest.raises(ConfigError, match="run-detector"):
        evaluate_bag(EvalBagConfig(truth, outputs=outputs, gated_threshold=0.05))


def test_a_recorded_box_with_a_nan_centroid_is_a_bag_error_naming_the_stamp():
    good = Box(10, 10, 3, 3, 0.9)
    bad = Box(10, 10, 3, 3, 0.9, centroid_x=float("nan"), centroid_y=11.0)
    boxes = {100_000_000: [good], 200_000_000: [bad]}
    with pytest.raises(BagError, match="stamp 200000000 ns cannot be tracked: .*non-finite"):
        run_tracker(boxes, TrackerConfig())


def test_a_recorded_mask_without_boxes_gives_no_tracking_metrics(bags, tmp_path, caplog):
    """With only a mask recorded the tracker saw no detection: Pd 0.0 with and without
    tracking, beside a mask Pd of 1.0. Now no tracking figures, and a warning."""
    truth, _ = bags
    with BagWriter(tmp_path / "masks") as w:
        for i in range(FRAMES):
            s = T0 + i * STEP
            m = np.zeros((H, W), np.uint8)
            for tid in (0, 1):
                x, y, bw, bh = box(tid, i)
                m[y : y + bh, x : x + bw] = 255
            w.write("/mask", s, image_msg(w.store, m, "mono8", s, "cam"))
    r = evaluate_bag(EvalBagConfig(truth, outputs=tmp_path / "masks"))
    assert r["pd"] == 1.0 and r["tracking"] is None
    assert "no targets or detections topic: no tracking metrics" in caplog.text


def test_truth_without_ids_says_why_there_are_no_tracking_metrics(bags, tmp_path, caplog):
    """Truth boxes without target ids (a user's own labels): the mask figures, no tracking
    section, and a warning the CLI shows, not an info line it hides."""
    _, outputs = bags
    truth = write_truth(tmp_path / "truth_no_ids", ids=False)
    with caplog.at_level("WARNING"):
        r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    assert r["tracking"] is None and r["pd"] is not None
    assert "truth targets without unique ids" in caplog.text


DROPPED_TARGETS = range(20, 25)  # frames the recorder has no /targets message of
DROPPED_TRACKS = range(0, 3)  # nor /tracks: it subscribed late


def write_partial_outputs(path: Path) -> Path:
    """A /mask of every frame (all scored), /targets and the node's perfect /tracks of some."""
    with BagWriter(path) as w:
        for i in range(FRAMES):
            s = T0 + i * STEP
            w.write("/mask", s, image_msg(w.store, np.zeros((H, W), np.uint8), "mono8", s, "cam"))
            if i not in DROPPED_TARGETS:
                w.write("/targets", s, targets_msg(w.store, detected(i), s, "cam"))
            if i not in DROPPED_TRACKS:
                tracks = [Box(*box(tid, i), id=str(tid + 1), centroid_x=position(tid, i)[0],
                              centroid_y=position(tid, i)[1]) for tid in (0, 1)]
                w.write("/tracks", s, detections_msg(w.store, tracks, s, "cam"))
    return path


def test_frames_without_a_boxes_or_tracks_message_are_left_out_and_counted(bags, tmp_path, caplog):
    """A recorder that subscribed late: the frames without a /targets or /tracks message were
    scored as frames where nothing was found (tracks Pd 0.83 for perfect tracks)."""
    truth, _ = bags
    with caplog.at_level("WARNING"):
        r = evaluate_bag(EvalBagConfig(truth, outputs=write_partial_outputs(tmp_path / "outputs")))
    assert r["frames"] == FRAMES and r["frames_missing"] == 0
    assert r["frames_missing_by_topic"] == {"/targets": len(DROPPED_TARGETS), "/tracks": len(DROPPED_TRACKS)}
    warned = f"{len(DROPPED_TARGETS)} of {FRAMES} scored frames of {truth} have no message on /targets"
    assert warned in caplog.text
    counts = [row["detections"] for row in r["per_frame"]]
    assert [i for i, n in enumerate(counts) if n is None] == list(DROPPED_TARGETS)
    det, trk = r["tracking"]["detections"], r["tracking"]["tracks"]
    assert det["frames"] == FRAMES - len(DROPPED_TARGETS) and trk["frames"] == FRAMES - len(DROPPED_TRACKS)
    kept = 2 * (FRAMES - len(DROPPED_TARGETS))
    assert det["pd"] == pytest.approx((kept - len(MISSED)) / kept)  # the misses of the kept frames only
    assert trk["pd"] == 1.0 and trk["id_switches"] == 0
    text = format_table(r)
    assert f"of those {len(DROPPED_TARGETS)} without /targets, {len(DROPPED_TRACKS)} without /tracks" in text
    # the tracking table says how many frames each column scored
    assert re.search(rf"\n  frames +{FRAMES - len(DROPPED_TARGETS)} +{FRAMES - len(DROPPED_TRACKS)}\n", text)


def test_complete_outputs_miss_no_topic(bags, caplog):
    r = evaluate_bag(EvalBagConfig(*bags))
    assert r["frames_missing_by_topic"] == {} and "have no message on" not in caplog.text
    assert None not in [row["detections"] for row in r["per_frame"]]


def _copy_truth(src: Path, path: Path, keep=lambda topic, i: True, convert=None) -> Path:
    """A copy of truth bag ``src``: the messages ``keep(topic, frame index)`` keeps, those of
    the truth targets topic through ``convert(store, msg)`` if given."""
    with BagReader(src) as reader, BagWriter(path) as w:
        for topic, t, msg in reader.messages():
            if not keep(topic, (t - T0) // STEP):
                continue
            if topic == TRUTH_TARGETS_TOPIC and convert is not None:
                msg = convert(w.store, msg)
            w.write(topic, t, msg)
    return path


@pytest.mark.parametrize("mask", [True, False])
def test_truth_targets_of_another_type_are_a_bag_error_naming_it(bags, tmp_path, mask):
    """A TargetArray on the truth targets topic was read as a Detection2DArray: a raw
    AttributeError, in the tracking metrics (with a mask) or the truth itself (without)."""
    truth, outputs = bags
    bag = _copy_truth(
        truth, tmp_path / "truth", keep=lambda topic, _i: mask or topic != TRUTH_MASK_TOPIC,
        convert=lambda store, m: targets_msg(store, [], stamp_ns(m.header), "cam"),
    )
    with pytest.raises(BagError, match=(
        f"{TRUTH_TARGETS_TOPIC} in {bag} is irstd_ros/msg/TargetArray, expected vision_msgs/msg/Detection2DArray"
    )):
        evaluate_bag(EvalBagConfig(bag, outputs=outputs))


SPARSE_EVERY = 3  # truth annotated on every 3rd frame only


def test_with_sparse_truth_the_tracker_runs_over_every_frame(bags, tmp_path):
    """It was fed the annotated frames alone: tracks confirmed later, Pd understated."""
    truth, outputs = bags
    sparse = _copy_truth(
        truth, tmp_path / "sparse",
        keep=lambda topic, i: topic == IMAGE_TOPIC or i % SPARSE_EVERY == 0,
    )
    full = evaluate_bag(EvalBagConfig(truth, outputs=outputs))["tracking"]["tracks"]
    r = evaluate_bag(EvalBagConfig(sparse, outputs=outputs))
    trk = r["tracking"]["tracks"]
    annotated = range(0, FRAMES, SPARSE_EVERY)
    assert r["frames"] == trk["frames"] == len(annotated)
    # the same tracks as with every frame annotated: misses on the tentative frames alone
    misses = 2 * sum(i < TENTATIVE for i in annotated)
    assert trk["pd"] == pytest.approx(1 - misses / (2 * len(annotated)))
    assert trk["false_tracks"] == full["false_tracks"] == 0


def test_a_clutter_only_sequence_reports_false_tracks_and_undefined_target_metrics(bags, tmp_path):
    """Without truth targets the tracking metrics were dropped in silence."""
    truth, outputs = bags
    clutter = tmp_path / "clutter"
    with BagReader(truth) as reader, BagWriter(clutter) as w:
        for topic, t, msg in reader.messages():
            if topic == TRUTH_MASK_TOPIC:
                msg = image_msg(w.store, np.zeros((H, W), np.uint8), "mono8", stamp_ns(msg.header), "cam")
            elif topic == TRUTH_TARGETS_TOPIC:
                msg = detections_msg(w.store, [], stamp_ns(msg.header), "cam")
            w.write(topic, t, msg)
    r = evaluate_bag(EvalBagConfig(clutter, outputs=outputs))
    det, trk = r["tracking"]["detections"], r["tracking"]["tracks"]
    assert r["pd"] is None and det["truth_instances"] == trk["truth_instances"] == 0
    hits = sum(len(detected(i)) for i in range(FRAMES))  # each detection its own false track
    assert det["false_tracks"] == hits
    assert det["false_tracks_per_min"] == pytest.approx(hits / (FRAMES * STEP / 1e9 / 60))
    assert trk["false_tracks"] >= 2 and trk["false_tracks_per_min"] > 0  # the two confirmed tracks
    for m in (det, trk):
        assert m["pd"] is None and m["idf1"] is None and m["mota"] is None and m["id_switches"] is None
    assert "false /min" in format_table(r)
