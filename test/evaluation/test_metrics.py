import numpy as np
import pytest

from irstd_ros.evaluation.metrics import (
    CalibrationAccumulator,
    MetricAccumulator,
    match_components,
    match_targets,
    pd_fa_curve,
)


def blank(h=20, w=20):
    return np.zeros((h, w), dtype=bool)


def test_pixel_metrics_on_known_overlap():
    truth, pred = blank(), blank()
    truth[2:4, 2:4] = True  # 4 px
    pred[2:4, 2:5] = True  # 6 px, 4 overlap
    acc = MetricAccumulator()
    acc.update(pred, truth)
    r = acc.result()
    assert r["iou"] == pytest.approx(4 / 6)
    assert r["precision"] == pytest.approx(4 / 6)
    assert r["recall"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(2 * (4 / 6) / (4 / 6 + 1))
    assert r["pd"] == 1.0
    assert r["fa"] == 0.0  # the only predicted component is matched


def test_pd_fa_with_a_miss_and_a_false_alarm():
    truth, pred = blank(), blank()
    truth[2, 2] = True
    truth[15, 15] = True  # missed
    pred[2, 3] = True  # within 3 px: detected
    pred[10:12, 0:3] = True  # 6 false-alarm pixels
    assert match_targets(pred, truth) == (2, 1, 6)
    acc = MetricAccumulator()
    acc.update(pred, truth)
    r = acc.result()
    assert r["pd"] == 0.5
    assert r["fa"] == pytest.approx(6 / 400)


def test_fa_counts_a_false_component_of_the_same_area_as_a_detection():
    """BasicIRSTD / DNANet drop from Fa every unmatched component whose area equals a
    matched one's (``x not in image_area_match``: 3 px here, not 5); every one counts."""
    truth, pred = blank(), blank()
    truth[5, 5:7] = True
    pred[5, 5:7] = True  # the detection, 2 px
    pred[15, 10:12] = True  # a false alarm of the same area, 2 px
    pred[10, 0:3] = True  # a false alarm of another area, 3 px
    assert match_targets(pred, truth) == (1, 1, 5)
    acc = MetricAccumulator()
    acc.update(pred, truth)
    assert acc.result()["fa"] == pytest.approx(5 / 400)


def test_far_prediction_is_not_a_detection():
    truth, pred = blank(), blank()
    truth[5, 5] = True
    pred[5, 9] = True  # 4 px away
    assert match_targets(pred, truth) == (1, 0, 1)


def test_one_prediction_detects_one_target_only():
    truth, pred = blank(), blank()
    truth[5, 5] = True
    truth[5, 7] = True
    pred[5, 6] = True
    targets, detected, _ = match_targets(pred, truth)
    assert (targets, detected) == (2, 1)


def test_niou_averages_the_images_with_targets():
    """Background-only images are not in nIoU (the field's metric gives them 0 whatever is
    predicted); their false targets are counted per background frame."""
    acc = MetricAccumulator()
    truth, pred = blank(), blank()
    truth[0, 0:2] = True
    pred[0, 0] = True
    acc.update(pred, truth)  # IoU 0.5
    acc.update(blank(), blank())  # a silent background frame: not in nIoU
    noisy = blank()
    noisy[3, 3] = True
    acc.update(noisy, blank())  # a false target on a background frame: not in nIoU either
    r = acc.result()
    assert r["niou"] == pytest.approx(0.5) and r["iou"] == pytest.approx(1 / 3)  # IoU: every pixel
    assert r["background_frames"] == 2 and r["false_targets_per_background_frame"] == 0.5
    only_background = MetricAccumulator()
    only_background.update(blank(), blank())
    assert only_background.result()["niou"] is None  # undefined, not 0 nor 1


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        MetricAccumulator().update(blank(4, 4), blank(5, 5))


def test_curve_rows_at_each_threshold():
    prob = np.zeros((20, 20))
    prob[2, 2] = 0.9  # true target, confident
    prob[10, 10] = 0.3  # weak true target
    prob[15, 3:5] = 0.6  # 2-px false alarm
    truth = np.zeros((20, 20), bool)
    truth[2, 2] = truth[10, 10] = True
    rows = pd_fa_curve([prob], [truth], [0.2, 0.5, 0.8])
    assert [r["pd"] for r in rows] == [1.0, 0.5, 0.5]
    assert [r["fa"] for r in rows] == [2 / 400, 2 / 400, 0.0]


def test_curve_rows_count_false_targets_on_background_frames():
    # the goal's "false targets per background-only frame" at every threshold: a frame
    # with a target does not count, an empty one does
    target_frame, background = np.zeros((20, 20)), np.zeros((20, 20))
    target_frame[2, 2], target_frame[12, 12] = 0.9, 0.4  # a target and a false one
    background[5, 5], background[15, 15] = 0.6, 0.3  # two false ones
    truth = np.zeros((20, 20), bool)
    truth[2, 2] = True
    rows = pd_fa_curve([target_frame, background], [truth, blank(20, 20)], [0.2, 0.5, 0.8])
    assert [r["false_targets_per_background_frame"] for r in rows] == [2.0, 1.0, 0.0]
    assert [r["false_targets_per_frame"] for r in rows] == [1.5, 0.5, 0.0]
    only_targets = pd_fa_curve([target_frame], [truth], [0.5])
    assert only_targets[0]["false_targets_per_background_frame"] is None


def test_f1_is_zero_when_one_side_is_empty_and_undefined_only_when_both_are():
    truth = np.zeros((8, 8), bool)
    truth[2, 2] = True
    missed = MetricAccumulator()
    missed.update(np.zeros_like(truth), truth)  # a model that detects nothing
    assert missed.result()["f1"] == 0.0 and missed.result()["precision"] is None
    false_alarm = MetricAccumulator()
    false_alarm.update(truth, np.zeros_like(truth))  # a false alarm on a background frame
    assert false_alarm.result()["f1"] == 0.0 and false_alarm.result()["recall"] is None
    quiet = MetricAccumulator()
    quiet.update(np.zeros_like(truth), np.zeros_like(truth))
    assert quiet.result()["f1"] is None
    both = MetricAccumulator()
    both.update(truth, truth)
    assert both.result()["f1"] == 1.0


def test_matching_reads_any_mask_dtype_as_binary():
    # a 0/255 uint8 mask (the usual file format) must not count 255 false pixels per pixel
    truth, pred = np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8)
    truth[5, 5] = 255
    pred[5, 6] = 255  # detected
    pred[15, 15:17] = 255  # a 2-px false alarm
    assert match_targets(pred, truth) == (1, 1, 2)


def test_centroid_distance_is_strictly_below_three_px():
    truth, pred = blank(), blank()
    truth[5, 5] = True
    pred[5, 8] = True  # exactly 3 px: not a detection (the field's "< 3")
    assert match_targets(pred, truth) == (1, 0, 1)
    pred[5, 8], pred[7, 7] = False, True  # 2.83 px diagonally: a detection
    assert match_targets(pred, truth) == (1, 1, 0)


def test_a_target_is_detected_by_its_nearest_prediction_not_the_first_in_label_order():
    """Two predicted components within 3 px of one target: the nearer (later in raster
    order) detects it and the farther is the false alarm (BasicIRSTD would take the first)."""
    truth, pred = blank(), blank()
    truth[5, 5] = True
    pred[3, 5] = True  # 2 px away, first in raster order, 1 px
    pred[6, 5:7] = True  # centroid (6, 5.5): 1.1 px away, 2 px
    m = match_components(pred, truth)
    assert (m.targets, m.detected, m.false_px) == (1, 1, 1)
    assert m.false.tolist() == [[3.0, 5.0]]


def test_calibration_error_weights_each_bin_by_its_pixels():
    """ECE = sum over bins of (pixels / all) * |mean probability - target fraction|, over
    the pixels of probability >= 0.05 only; 1.0 falls in the last bin."""
    prob = np.array([[0.01, 0.1, 0.1, 0.9, 0.9, 1.0]])
    truth = np.array([[True, True, False, True, True, True]])
    calib = CalibrationAccumulator()
    calib.update(prob, truth)
    r = calib.result()
    # bin 0: 2 px, mean 0.1, half true (0.4); 0.9's bin: 2 px, all true (0.1); last: 1 px (0)
    assert r["pixels"] == 5
    assert r["ece"] == pytest.approx((2 * 0.4 + 2 * 0.1 + 1 * 0.0) / 5)
    bins = r["bins"]
    assert [b["pixels"] for b in bins] == [2, 0, 0, 0, 0, 0, 0, 0, 2, 1]
    assert bins[0]["mean_prob"] == pytest.approx(0.1) and bins[0]["target_fraction"] == 0.5
    assert CalibrationAccumulator().result()["ece"] is None  # no pixel: undefined


def test_the_curve_and_the_calibration_read_a_signed_mask_as_the_metrics_do():
    """A mask of a signed type (int8 255 read as -1, an 'ignore' of -1) is a target where
    non-zero for MetricAccumulator (and read_mask), but the curve and the reliability
    diagram took only > 0: the curve's row at the operating threshold disagreed with the
    report's own figures."""
    truth = np.zeros((32, 32), np.int8)
    truth[4:7, 4:7] = -1
    truth[20:23, 20:23] = 1
    prob = np.zeros((32, 32), np.float32)
    prob[4:7, 4:7] = 0.9
    prob[20:23, 20:23] = 0.8
    acc = MetricAccumulator()
    acc.update(prob > 0.5, truth)
    (row,) = pd_fa_curve([prob], [truth], [0.5])
    assert row["pd"] == acc.result()["pd"] == 1.0
    assert row["fa"] == acc.result()["fa"] == 0.0 and row["iou"] == acc.result()["iou"] == 1.0
    cal = CalibrationAccumulator(bins=2)
    cal.update(prob, truth)
    assert cal.result()["bins"][1]["target_fraction"] == 1.0  # both blobs are targets
