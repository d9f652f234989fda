"""eval-bag on hand-made bags with known hits, misses and false alarms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from irstd_ros.bags.evaluate import (
    EvalBagConfig,
    boxes_to_mask,
    evaluate_bag,
    fa_per_frame,
    plot_over_time,
)
from irstd_ros.bags.io import (
    IMAGE_TOPIC,
    TRUTH_MASK_TOPIC,
    TRUTH_TARGETS_TOPIC,
    BagWriter,
    Box,
    detections_msg,
    image_msg,
    targets_msg,
)
from irstd_ros.bags.report import format_table
from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.targets import Target
from irstd_ros.errors import BagError, ConfigError
from irstd_ros.inference.detector import DetectionResult
from irstd_ros.models import named_config

H, W = 32, 40
T0 = 1_000_000_000_000
STEP = 100_000_000  # 10 fps
LATENCY_NS = 40_000_000
A = (5, 5, 2, 2)  # x, y, w, h
B = (30, 20, 1, 1)
FALSE_ALARM = (10, 10, 1, 3)  # 3 px, far from both targets


def box_mask(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    for x, y, w, h in boxes:
        m[y : y + h, x : x + w] = True
    return m


def target(i: int, box: tuple[int, int, int, int]) -> Target:
    x, y, w, h = box
    return Target(
        i, 0.9, x, y, w, h, w * h, x + (w - 1) / 2, y + (h - 1) / 2, 200.0, 180.0, 50.0, 9.0
    )


def write_truth(path: Path, frames: int = 3) -> Path:
    with BagWriter(path) as w:
        for i in range(frames):
            s = T0 + i * STEP
            frame = np.full((H, W), 60, np.uint8)
            frame[box_mask(A, B)] = 200
            w.write(IMAGE_TOPIC, s, image_msg(w.store, frame, "mono8", s, "cam"))
            w.write(
                TRUTH_MASK_TOPIC,
                s,
                image_msg(w.store, box_mask(A, B).astype(np.uint8) * 255, "mono8", s, "cam"),
            )
            w.write(TRUTH_TARGETS_TOPIC, s, detections_msg(w.store, [Box(*A), Box(*B)], s, "cam"))
    return path


# frame 0: both found; frame 1: A found, B missed, one false alarm; frame 2: no output
OUTPUT_BOXES = {0: [A, B], 1: [A, FALSE_ALARM]}


REPLAYED_LATER_NS = 86_400 * 1_000_000_000  # a replay: receive times a day after the stamps


def write_outputs(
    path: Path, with_mask: bool = True, with_input: bool = True, delay_ns: int = REPLAYED_LATER_NS
) -> Path:
    with BagWriter(path) as w:
        for i, boxes in OUTPUT_BOXES.items():
            s = T0 + i * STEP
            recv = s + delay_ns
            if with_input:
                w.write(
                    IMAGE_TOPIC,
                    recv,
                    image_msg(w.store, np.zeros((H, W), np.uint8), "mono8", s, "cam"),
                )
            if with_mask:
                m = box_mask(*boxes).astype(np.uint8) * 255
                w.write("/mask", recv + LATENCY_NS, image_msg(w.store, m, "mono8", s, "cam"))
            tg = [target(k, b) for k, b in enumerate(boxes)]
            w.write("/targets", recv + LATENCY_NS, targets_msg(w.store, tg, s, "cam"))
            w.write(
                "/detections",
                recv + LATENCY_NS,
                detections_msg(w.store, [Box(*b) for b in boxes], s, "cam"),
            )
    return path


@pytest.fixture
def bags(tmp_path):
    return write_truth(tmp_path / "truth"), write_outputs(tmp_path / "outputs")


def test_known_hits_misses_and_false_alarms(bags):
    truth, outputs = bags
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    assert r["frames"] == 2 and r["frames_missing"] == 1
    assert r["targets"] == 4 and r["detected"] == 3
    assert r["pd"] == pytest.approx(0.75)
    assert r["false_px"] == 3
    assert r["fa"] == pytest.approx(3 / (2 * H * W))
    assert r["iou"] == pytest.approx(9 / 13)  # frame 0: 5/5, frame 1: 4 of 5 + 3 false
    rows = r["per_frame"]
    assert [(x["targets"], x["detected"], x["false_px"]) for x in rows] == [(2, 2, 0), (2, 1, 3)]
    assert [x["t_s"] for x in rows] == pytest.approx([0.0, 0.1])
    assert [x["detections"] for x in rows] == [2, 2]
    assert r["mask_source"] == "mask"
    json.dumps(r)  # JSON-ready


def test_latency_from_the_recorded_input(bags):
    r = evaluate_bag(EvalBagConfig(*bags[:1], outputs=bags[1]))
    assert r["latency_source"] == "recorded"
    assert r["latency_ms"]["mean"] == pytest.approx(LATENCY_NS / 1e6)


def test_no_latency_without_input_or_live_stamps(tmp_path):
    truth = write_truth(tmp_path / "truth")
    outputs = write_outputs(tmp_path / "o", with_input=False)
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    assert r["latency_ms"] is None and r["latency_source"] is None


def test_latency_from_live_header_stamps(tmp_path):
    truth = write_truth(tmp_path / "truth")
    outputs = write_outputs(tmp_path / "o", with_input=False, delay_ns=0)
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    assert r["latency_source"] == "header"
    assert r["latency_ms"]["p50"] == pytest.approx(LATENCY_NS / 1e6)


def test_boxes_are_used_when_no_mask_was_recorded(tmp_path):
    truth = write_truth(tmp_path / "truth")
    outputs = write_outputs(tmp_path / "o", with_mask=False)
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    assert r["mask_source"] == "boxes"
    assert (r["targets"], r["detected"], r["false_px"]) == (4, 3, 3)


def test_outputs_of_another_sequence_are_refused(tmp_path):
    truth = write_truth(tmp_path / "truth")
    with BagWriter(tmp_path / "other") as w:
        s = T0 + 123
        w.write("/mask", s, image_msg(w.store, np.zeros((H, W), np.uint8), "mono8", s, "cam"))
    with pytest.raises(BagError, match="header stamp"):
        evaluate_bag(EvalBagConfig(truth, outputs=tmp_path / "other"))


def test_exactly_one_prediction_source(bags):
    with pytest.raises(ConfigError):
        evaluate_bag(EvalBagConfig(bags[0]))
    with pytest.raises(ConfigError):
        evaluate_bag(EvalBagConfig(bags[0], outputs=bags[1], run_detector=True))


class PerfectDetector:
    """Answers the truth: bright pixels are targets."""

    info = CheckpointInfo(named_config("tiny"))

    def detect(self, frame: np.ndarray) -> DetectionResult:
        mask = frame > 100
        return DetectionResult(
            mask.astype(np.float32), mask, [target(0, A), target(1, B)], {"infer_ms": 2.0}
        )


def test_run_detector_and_save_outputs(tmp_path, monkeypatch):
    from irstd_ros.inference import detector as det_mod

    monkeypatch.setattr(
        det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: PerfectDetector())
    )
    truth = write_truth(tmp_path / "truth")
    saved = tmp_path / "saved"
    r = evaluate_bag(EvalBagConfig(truth, run_detector=True, save_outputs=saved))
    assert (r["pd"], r["fa"], r["frames"], r["frames_missing"]) == (1.0, 0.0, 3, 0)
    assert r["latency_source"] == "detector" and r["latency_ms"]["mean"] == pytest.approx(2.0)
    again = evaluate_bag(EvalBagConfig(truth, outputs=saved))
    assert (again["pd"], again["fa"], again["iou"]) == (1.0, 0.0, 1.0)


def test_saved_detections_claim_no_identity_across_frames(tmp_path, monkeypatch):
    """The saved `detections` are the node's: a Detection2D's id is for the same object
    across messages (vision_msgs), and a detection's rank in its frame is none; empty."""
    from irstd_ros.bags.evaluate import OUTPUT_DETECTIONS_TOPIC
    from irstd_ros.bags.io import BagReader
    from irstd_ros.inference import detector as det_mod

    monkeypatch.setattr(
        det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: PerfectDetector())
    )
    saved = tmp_path / "saved"
    evaluate_bag(EvalBagConfig(write_truth(tmp_path / "truth"), run_detector=True, save_outputs=saved))
    with BagReader(saved) as reader:
        ids = [d.id for _, _, m in reader.messages([OUTPUT_DETECTIONS_TOPIC]) for d in m.detections]
    assert len(ids) == 6 and set(ids) == {""}


def test_plot_is_written(bags, tmp_path):
    r = evaluate_bag(EvalBagConfig(bags[0], outputs=bags[1]))
    plot_over_time(r, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_a_sequence_without_targets_is_reported_and_plotted(tmp_path):
    """Pd of a background-only bag is undefined (None): the table and the plot raised
    TypeError formatting it."""
    with BagWriter(tmp_path / "truth") as w:
        for i in range(3):
            s = T0 + i * STEP
            empty = np.zeros((H, W), np.uint8)
            w.write(IMAGE_TOPIC, s, image_msg(w.store, empty, "mono8", s, "cam"))
            w.write(TRUTH_MASK_TOPIC, s, image_msg(w.store, empty, "mono8", s, "cam"))
    r = evaluate_bag(EvalBagConfig(tmp_path / "truth", outputs=write_outputs(tmp_path / "o")))
    assert r["targets"] == 0 and r["pd"] is None and r["false_px"] > 0
    assert "Pd          -" in format_table(r).splitlines()
    plot_over_time(r, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_boxes_off_the_frame_fill_nothing():
    """A box wholly left of (or above) the frame has a negative end, which numpy counts
    from the far side: it filled most of a row band."""
    assert not boxes_to_mask([Box(-5, 3, 2, 2), Box(3, -6, 2, 3)], (8, 10)).any()
    assert boxes_to_mask([Box(-1, -1, 3, 3)], (8, 10)).sum() == 4  # the part inside


def test_a_named_truth_mask_in_the_outputs_bag_is_not_taken_for_the_outputs(tmp_path):
    """One recording holding the truth (on --truth-mask-topic /gt/mask) and the node's
    /mask: the truth, first in name order, was scored as the node's mask (Pd 1, Fa 0)."""
    bag = tmp_path / "all"
    with BagWriter(bag) as w:
        for i in range(2):
            s = T0 + i * STEP
            truth = box_mask(A, B).astype(np.uint8) * 255
            w.write(IMAGE_TOPIC, s, image_msg(w.store, truth, "mono8", s, "cam"))
            w.write("/gt/mask", s, image_msg(w.store, truth, "mono8", s, "cam"))
            found = box_mask(A).astype(np.uint8) * 255  # the node finds A only
            w.write("/mask", s + LATENCY_NS, image_msg(w.store, found, "mono8", s, "cam"))
    r = evaluate_bag(EvalBagConfig(bag, outputs=bag, truth_mask_topic="/gt/mask"))
    assert (r["targets"], r["detected"]) == (4, 2)


def test_truth_boxes_are_filled_at_the_size_of_the_scored_camera(tmp_path):
    """Truth boxes (no truth mask) were filled at the size of whichever Image topic came
    first: a smaller colour camera's clipped the scored camera's target away (Pd undefined)."""
    bag = tmp_path / "two_cameras"
    with BagWriter(bag) as w:
        for i in range(2):
            s = T0 + i * STEP
            w.write("/rgb/image", s, image_msg(w.store, np.zeros((8, 10, 3), np.uint8), "rgb8", s, "rgb"))
            w.write(IMAGE_TOPIC, s + 1, image_msg(w.store, np.zeros((H, W), np.uint8), "mono8", s, "cam"))
            w.write(TRUTH_TARGETS_TOPIC, s, detections_msg(w.store, [Box(*B)], s, "cam"))
            w.write("/detections", s + LATENCY_NS, detections_msg(w.store, [Box(*B)], s, "cam"))
    r = evaluate_bag(EvalBagConfig(bag, outputs=bag, tracking=False))
    assert (r["targets"], r["detected"], r["pixels_per_frame"]) == (2, 2, H * W)


def write_two_nodes(path: Path) -> Path:
    """Outputs of two cameras' nodes, with the truth's stamps: cam1's finds A and B, cam2's nothing."""
    with BagWriter(path) as w:
        for i in range(3):
            s = T0 + i * STEP
            found = detections_msg(w.store, [Box(*A), Box(*B)], s, "cam1")
            w.write("/cam1/irstd/detections", s + LATENCY_NS, found)
            w.write("/cam2/irstd/detections", s + LATENCY_NS, detections_msg(w.store, [], s, "cam2"))
    return path


def test_outputs_of_several_nodes_are_an_error_naming_them(tmp_path):
    """The outputs of two cameras' nodes: the first by name was scored, without a word."""
    truth, outputs = write_truth(tmp_path / "truth"), write_two_nodes(tmp_path / "outputs")
    with pytest.raises(BagError, match="several nodes") as info:
        evaluate_bag(EvalBagConfig(truth, outputs=outputs, tracking=False))
    text = str(info.value)
    assert "/cam1/irstd: /cam1/irstd/detections; /cam2/irstd: /cam2/irstd/detections" in text
    assert "--outputs-ns" in text and "\n" not in text


@pytest.mark.parametrize(("namespace", "detected"), [("/cam1/irstd", 6), ("cam2/irstd/", 0)])
def test_outputs_ns_chooses_the_node_scored(tmp_path, namespace, detected):
    truth, outputs = write_truth(tmp_path / "truth"), write_two_nodes(tmp_path / "outputs")
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs, outputs_ns=namespace, tracking=False))
    assert (r["frames"], r["targets"], r["detected"]) == (3, 6, detected)


def test_an_outputs_ns_of_no_output_lists_those_there(tmp_path):
    truth, outputs = write_truth(tmp_path / "truth"), write_two_nodes(tmp_path / "outputs")
    with pytest.raises(BagError, match=r"no node output in namespace /cam3 .*/cam1/irstd: "):
        evaluate_bag(EvalBagConfig(truth, outputs=outputs, outputs_ns="/cam3", tracking=False))


def test_several_output_topics_of_one_node_take_the_nodes_own_name(tmp_path):
    """Beside the node's /irstd/detections, another Detection2DArray topic of the same
    namespace (/irstd/clusters, first by name) is not scored in its place."""
    truth = write_truth(tmp_path / "truth")
    outputs = tmp_path / "outputs"
    with BagWriter(outputs) as w:
        for i in range(3):
            s = T0 + i * STEP
            w.write("/irstd/clusters", s, detections_msg(w.store, [], s, "cam"))
            w.write("/irstd/detections", s, detections_msg(w.store, [Box(*A), Box(*B)], s, "cam"))
    r = evaluate_bag(EvalBagConfig(truth, outputs=outputs, tracking=False))
    assert (r["targets"], r["detected"]) == (6, 6)


def test_outputs_of_no_truth_frame_are_counted_and_warned(tmp_path, caplog):
    """Outputs whose stamp matched no truth frame were dropped without a count: a
    recording of a longer run (or of other frames) looked fully scored."""
    truth = write_truth(tmp_path / "truth", frames=1)  # truth for frame 0 only
    outputs = write_outputs(tmp_path / "outputs")  # outputs for frames 0 and 1
    with caplog.at_level("WARNING", logger="irstd_ros.bags.evaluate"):
        r = evaluate_bag(EvalBagConfig(truth, outputs=outputs, tracking=False))
    assert (r["frames"], r["frames_missing"], r["outputs_without_truth"]) == (1, 0, 1)
    assert "1 output frame(s) of /mask" in caplog.text and f"{T0 + STEP} ns" in caplog.text
    assert "1 outputs without a truth frame" in format_table(r)
    json.loads(json.dumps(r))


def test_outputs_that_all_match_count_none_without_truth(bags, caplog):
    r = evaluate_bag(EvalBagConfig(*bags[:1], outputs=bags[1], tracking=False))
    assert r["outputs_without_truth"] == 0
    assert "match no truth frame" not in caplog.text and "without a truth frame" not in format_table(r)


SMALL = (H // 2, W // 2)  # the camera's later frames (binning switched on mid-bag)


def write_resizing_truth(path: Path, truth_mask: bool = True) -> Path:
    """Two frames of (H, W), then two of :data:`SMALL`, target A in each; the truth as a
    mask, or (``truth_mask=False``) as boxes only."""
    with BagWriter(path) as w:
        for i in range(4):
            s = T0 + i * STEP
            size = (H, W) if i < 2 else SMALL
            mask = boxes_to_mask([Box(*A)], size).astype(np.uint8) * 255
            w.write(IMAGE_TOPIC, s, image_msg(w.store, mask // 2, "mono8", s, "cam"))
            if truth_mask:
                w.write(TRUTH_MASK_TOPIC, s, image_msg(w.store, mask, "mono8", s, "cam"))
            w.write(TRUTH_TARGETS_TOPIC, s, detections_msg(w.store, [Box(*A)], s, "cam"))
    return path


@pytest.mark.parametrize("outputs_mask", [False, True], ids=["boxes-only outputs", "mask outputs"])
@pytest.mark.parametrize("truth_mask", [True, False], ids=["truth mask", "truth boxes"])
def test_boxes_are_filled_at_the_size_of_their_own_frame(tmp_path, truth_mask, outputs_mask):
    """Frames that change size mid-bag: boxes (the node's without a mask, the truth's without
    one) were filled at the first frame's size, and the later frames refused as "outputs of
    another sequence?"."""
    truth = write_resizing_truth(tmp_path / "truth", truth_mask)
    with BagWriter(tmp_path / "outputs") as w:
        for i in range(4):
            s = T0 + i * STEP
            if outputs_mask:
                found = boxes_to_mask([Box(*A)], (H, W) if i < 2 else SMALL).astype(np.uint8) * 255
                w.write("/mask", s, image_msg(w.store, found, "mono8", s, "cam"))
            w.write("/targets", s, targets_msg(w.store, [target(0, A)], s, "cam"))
    r = evaluate_bag(EvalBagConfig(truth, outputs=tmp_path / "outputs", tracking=False))
    assert (r["frames"], r["targets"], r["detected"], r["false_px"], r["iou"]) == (4, 4, 4, 0, 1.0)


@pytest.mark.parametrize("truth_mask", [True, False], ids=["truth mask", "truth boxes"])
def test_fa_per_pixel_counts_each_frame_at_its_own_size(tmp_path, truth_mask):
    """A bag whose frame size changes: ``pixels_per_frame`` was the first frame's, so the
    per-frame Fa (the plot's) of the smaller frames was a quarter of theirs, and
    ``false_px / (pixels_per_frame * frames)`` was not the Fa reported."""
    truth = write_resizing_truth(tmp_path / "truth", truth_mask)
    with BagWriter(tmp_path / "outputs") as w:
        for i in range(4):  # A found in each frame, and one false alarm of 3 px
            s = T0 + i * STEP
            found = [target(0, A), target(1, FALSE_ALARM)]
            w.write("/targets", s, targets_msg(w.store, found, s, "cam"))
    r = evaluate_bag(EvalBagConfig(truth, outputs=tmp_path / "outputs", tracking=False))
    pixels = [H * W] * 2 + [SMALL[0] * SMALL[1]] * 2
    assert [row["pixels"] for row in r["per_frame"]] == pixels
    assert (r["frames"], r["false_px"], r["pixels"]) == (4, 4 * 3, sum(pixels))
    assert r["pixels_per_frame"] * r["frames"] == sum(pixels)
    assert r["fa"] == pytest.approx(r["false_px"] / sum(pixels))
    np.testing.assert_allclose(fa_per_frame(r), [3 / p for p in pixels])
    plot_over_time(r, tmp_path / "pd_fa.png")
    assert (tmp_path / "pd_fa.png").stat().st_size > 0


def test_boxes_of_a_frame_the_image_topic_lacks_take_its_first_frames_size(tmp_path):
    with BagWriter(tmp_path / "truth") as w:
        for i in range(2):
            s = T0 + i * STEP
            if i == 0:
                w.write(IMAGE_TOPIC, s, image_msg(w.store, np.zeros((H, W), np.uint8), "mono8", s, "cam"))
            w.write(TRUTH_TARGETS_TOPIC, s, detections_msg(w.store, [Box(*A)], s, "cam"))
            w.write("/targets", s, targets_msg(w.store, [target(0, A)], s, "cam"))
    r = evaluate_bag(EvalBagConfig(tmp_path / "truth", outputs=tmp_path / "truth", tracking=False))
    assert (r["frames"], r["detected"], r["pixels_per_frame"]) == (2, 2, H * W)


OTHER_CLOCK_NS = 60_730_296 * 1_000_000_000  # the audit's: 1.9 years from the outputs' clock


@pytest.mark.parametrize(
    ("delay_ns", "input_clock_ns", "source"),
    [
        (REPLAYED_LATER_NS, -REPLAYED_LATER_NS // 2, None),  # the input's clock behind: + half a day
        (REPLAYED_LATER_NS, OTHER_CLOCK_NS, None),  # ahead: -1.9 years
        (0, OTHER_CLOCK_NS, "header"),  # the header stamps are live: theirs
    ],
)
def test_a_recorded_input_on_another_clock_gives_no_recorded_latency(
    tmp_path, caplog, delay_ns, input_clock_ns, source
):
    """An outputs bag whose image came from another clock: a mean "recorded" latency of 1.9
    years. Now none (or the header stamps' where those are live), as the header path's rule."""
    truth = write_truth(tmp_path / "truth")
    outputs = tmp_path / "outputs"
    with BagWriter(outputs) as w:
        for i, boxes in OUTPUT_BOXES.items():
            s = T0 + i * STEP
            recv = s + delay_ns
            frame = image_msg(w.store, np.zeros((H, W), np.uint8), "mono8", s, "cam")
            w.write(IMAGE_TOPIC, recv + input_clock_ns, frame)
            m = box_mask(*boxes).astype(np.uint8) * 255
            w.write("/mask", recv + LATENCY_NS, image_msg(w.store, m, "mono8", s, "cam"))
    with caplog.at_level("WARNING"):
        r = evaluate_bag(EvalBagConfig(truth, outputs=outputs))
    assert r["latency_source"] == source
    if source is None:
        assert r["latency_ms"] is None and {row["latency_ms"] for row in r["per_frame"]} == {None}
    else:
        assert r["latency_ms"]["max"] == pytest.approx(LATENCY_NS / 1e6)
    assert f"{IMAGE_TOPIC}'s receive times are not on the outputs' clock" in caplog.text
