import numpy as np
import pytest

from irstd_ros.core.targets import PostprocessConfig, extract_candidates, extract_targets
from irstd_ros.errors import ConfigError


def prob_map():
    p = np.zeros((40, 50), np.float32)
    p[5:8, 10:12] = 0.9  # 6 px, score 0.9
    p[6, 11] = 0.95
    p[30, 40] = 0.7  # 1 px
    p[20:30, 20:30] = 0.8  # 100 px
    p[0:2, 48:50] = 0.4  # below threshold
    return p


def test_components_boxes_and_scores():
    intensity = np.full((40, 50), 10.0)
    mask, targets = extract_targets(prob_map(), intensity, PostprocessConfig(threshold=0.5))
    assert len(targets) == 3
    assert [round(t.score, 2) for t in targets] == [0.95, 0.8, 0.7]  # sorted by score
    first = targets[0]
    assert (first.x, first.y, first.width, first.height, first.area) == (10, 5, 2, 3, 6)
    assert (first.center_x, first.center_y) == (10.5, 6.0)
    assert mask.sum() == 6 + 100 + 1


def test_area_limits_and_max_detections_keep_mask_consistent():
    intensity = np.zeros((40, 50))
    mask, targets = extract_targets(prob_map(), intensity, PostprocessConfig(0.5, min_area=2, max_area=50))
    assert [t.area for t in targets] == [6]
    assert mask.sum() == 6
    mask, targets = extract_targets(prob_map(), intensity, PostprocessConfig(0.5, max_detections=1))
    assert len(targets) == 1 and mask.sum() == 6


def test_diagonal_pixels_form_one_target():
    p = np.zeros((10, 10), np.float32)
    p[2, 2] = p[3, 3] = p[4, 4] = 0.9
    _, targets = extract_targets(p, np.zeros((10, 10)), PostprocessConfig())
    assert len(targets) == 1 and targets[0].area == 3


def test_ir_statistics_and_weighted_centroid():
    intensity = np.full((20, 20), 100.0)
    intensity[::2, :] += 2.0  # background with std 1
    intensity[10, 10] = 200.0
    intensity[10, 11] = 150.0
    p = np.zeros((20, 20), np.float32)
    p[10, 10:12] = 0.9
    _, (t,) = extract_targets(p, intensity, PostprocessConfig())
    bg_mean = 101.0
    assert t.peak_intensity == 200.0
    assert t.mean_intensity == 175.0
    assert t.local_contrast == pytest.approx(175.0 - bg_mean, abs=0.2)
    assert t.snr == pytest.approx((200.0 - bg_mean) / 1.0, rel=0.02)
    w1, w2 = 200.0 - bg_mean, 150.0 - bg_mean
    assert t.centroid_x == pytest.approx(10 + w2 / (w1 + w2), abs=0.01)
    assert t.centroid_y == pytest.approx(10.0)


def test_empty_map_gives_nothing():
    mask, targets = extract_targets(np.zeros((8, 8)), np.zeros((8, 8)), PostprocessConfig())
    assert targets == [] and not mask.any()


def test_candidates_are_the_sub_threshold_components_only():
    p = prob_map()
    p[4:9, 9:13] = np.maximum(p[4:9, 9:13], 0.35)  # halo around the 0.95 detection
    p[15, 5:7] = 0.3  # a sub-threshold blob
    p[35, 5] = 0.12  # below the candidate threshold
    intensity = np.zeros((40, 50))
    cfg = PostprocessConfig(threshold=0.5)
    _, targets = extract_targets(p, intensity, cfg)
    cands = extract_candidates(p, intensity, cfg, 0.2, first_id=len(targets))
    # the halo belongs to a detection; the corner blob (0.4) and the new blob are candidates
    assert [(c.x, c.y, c.area) for c in cands] == [(48, 0, 4), (5, 15, 2)]
    assert [c.id for c in cands] == [3, 4] and all(c.score <= 0.5 for c in cands)
    assert extract_candidates(p, intensity, cfg, 0.5) == []  # not below: off
    assert len(extract_candidates(p, intensity, PostprocessConfig(0.5, max_detections=1), 0.2)) == 1


def test_labelling_inside_the_occupied_box_matches_the_whole_frame():
    """Targets at the frame's corners and inside it: the line-limited labelling gives the
    components, boxes, areas and centroids of a whole-frame labelling."""
    from scipy import ndimage

    from irstd_ros.core.components import EIGHT_CONNECTED

    rng = np.random.default_rng(3)
    prob = np.zeros((60, 80), np.float32)
    for y, x in ((0, 0), (58, 78), (30, 5), (12, 60), (45, 40)):
        prob[y : y + 2, x : x + 2] = rng.uniform(0.6, 1.0, (2, 2)).astype(np.float32)
    intensity = rng.normal(100, 3, prob.shape).astype(np.float32) + 50 * (prob > 0)
    mask, targets = extract_targets(prob, intensity, PostprocessConfig(threshold=0.5))
    labels, n = ndimage.label(prob > 0.5, structure=EIGHT_CONNECTED)
    assert n == len(targets) == 5
    assert np.array_equal(mask, labels > 0)
    boxes = {(t.y, t.x, t.height, t.width, t.area) for t in targets}
    expected = {
        (sl[0].start, sl[1].start, sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, int((labels[sl] == i).sum()))
        for i, sl in enumerate(ndimage.find_objects(labels), start=1)
    }
    assert boxes == expected
    for t in targets:
        assert t.y <= t.centroid_y <= t.y + t.height - 1 and t.x <= t.centroid_x <= t.x + t.width - 1
    only = np.zeros_like(prob)
    only[20:22, 30:32] = 0.7  # one target away from the edges: the box is 2x2 px
    _, [single] = extract_targets(only, intensity, PostprocessConfig(threshold=0.5))
    assert (single.y, single.x, single.area) == (20, 30, 4)


@pytest.mark.parametrize("seed", range(6))
def test_labelling_the_occupied_lines_matches_the_whole_frame(seed):
    """Random sparse masks, with components one empty row or column apart and touching
    only at a corner: labelling the occupied rows and columns (one blank line kept between
    runs) gives the components, boxes and sub-threshold candidates of a whole-frame
    labelling."""
    from scipy import ndimage

    from irstd_ros.core.components import EIGHT_CONNECTED

    rng = np.random.default_rng(seed)
    prob = np.zeros((70, 90), np.float32)
    prob[rng.random(prob.shape) < 0.03] = 0.9
    prob[10, 10] = prob[10, 12] = 0.9  # one empty column apart: two targets
    prob[20, 30] = prob[22, 30] = 0.9  # one empty row apart: two targets
    prob[40, 40] = prob[41, 41] = 0.9  # corner to corner: one target
    prob[rng.random(prob.shape) < 0.02] = 0.3  # sub-threshold candidates
    intensity = rng.normal(100, 3, prob.shape).astype(np.float32)
    cfg = PostprocessConfig(threshold=0.5, max_detections=10_000)
    mask, targets = extract_targets(prob, intensity, cfg)
    labels, n = ndimage.label(prob > 0.5, structure=EIGHT_CONNECTED)
    assert len(targets) == n and np.array_equal(mask, labels > 0)
    boxes = sorted((t.y, t.x, t.height, t.width, t.area) for t in targets)
    expected = sorted(
        (sl[0].start, sl[1].start, sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, int((labels[sl] == i).sum()))
        for i, sl in enumerate(ndimage.find_objects(labels), start=1)
    )
    assert boxes == expected
    low, m = ndimage.label(prob > 0.2, structure=EIGHT_CONNECTED)
    pure = [i for i in range(1, m + 1) if not (prob[low == i] > 0.5).any()]
    candidates = extract_candidates(prob, intensity, cfg, 0.2)
    assert sorted((c.y, c.x, c.area) for c in candidates) == sorted(
        (int(np.nonzero(low == i)[0].min()), int(np.nonzero(low == i)[1].min()), int((low == i).sum())) for i in pure
    )


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"max_detections": -1}, "max_detections"),  # kept all but the weakest target
        ({"threshold": float("nan")}, "probability"),  # passed no pixel
        ({"threshold": 1.5}, "probability"),
        ({"threshold": -0.1}, "probability"),
        ({"min_area": 5, "max_area": 2}, "min_area"),  # kept nothing
    ],
)
def test_postprocess_limits_that_would_silently_change_the_targets_are_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        PostprocessConfig(**changes)


@pytest.mark.parametrize("changes", [{"threshold": 0.0}, {"threshold": 1.0}, {"max_detections": 0}])
def test_postprocess_limits_at_their_ends_are_accepted(changes):
    PostprocessConfig(**changes)


def test_snr_on_a_flat_background_is_infinite_above_it_and_zero_otherwise():
    """A background without spread has no noise to divide by: a target brighter than it
    is infinitely far above the noise, one no brighter is not above it at all."""
    intensity = np.full((20, 20), 50.0)
    intensity[5, 5], intensity[15, 15] = 80.0, 50.0
    p = np.zeros((20, 20), np.float32)
    p[5, 5], p[15, 15] = 0.9, 0.8
    _, (bright, level) = extract_targets(p, intensity, PostprocessConfig())
    assert bright.snr == float("inf") and bright.local_contrast == 30.0
    assert level.snr == 0.0 and level.local_contrast == 0.0


def test_background_ring_at_the_frame_corner_is_clipped_not_shifted():
    """A target in the top-left corner: its ring is the BACKGROUND_MARGIN px around the
    box that lie inside the frame, row 0 and column 0 included."""
    from irstd_ros.core.targets import BACKGROUND_MARGIN

    intensity = np.full((20, 20), 100.0)
    intensity[0, :], intensity[:, 0] = 0.0, 0.0  # the frame's first row and column differ
    intensity[0:2, 0:2] = 300.0  # the target: rows 0-1, columns 0-1
    p = np.zeros((20, 20), np.float32)
    p[0:2, 0:2] = 0.9
    _, (t,) = extract_targets(p, intensity, PostprocessConfig())
    window = intensity[: 2 + BACKGROUND_MARGIN, : 2 + BACKGROUND_MARGIN].copy()
    ring = np.ones(window.shape, bool)
    ring[0:2, 0:2] = False
    assert t.local_contrast == pytest.approx(300.0 - window[ring].mean())


def test_a_target_without_background_around_it_has_no_contrast_and_no_snr():
    """A frame all above the threshold (a 300 K scene, the network sure of every pixel):
    no background to measure against, so no contrast and no SNR, not the target's
    absolute mean and +inf; its centroid is the component's centre. (Only such a frame
    leaves the ring empty: a pixel beside a target above the threshold is part of it.)"""
    intensity = np.full((3, 3), 300.0)
    intensity[1, 1] = 301.0
    _, (t,) = extract_targets(np.ones((3, 3), np.float32), intensity, PostprocessConfig(0.5))
    assert (t.local_contrast, t.snr) == (0.0, 0.0)
    assert (t.centroid_x, t.centroid_y) == (1.0, 1.0)
    assert t.mean_intensity == pytest.approx(300.0 + 1 / 9)


def _reference_targets(prob, intensity, cfg, threshold, above=None):
    """The targets of ``prob > threshold`` the plain way: a whole-frame labelling, numpy's
    ``mean``/``std``/``clip`` on each component's pixels and background ring."""
    from scipy import ndimage

    from irstd_ros.core.components import EIGHT_CONNECTED
    from irstd_ros.core.targets import BACKGROUND_MARGIN

    binary = prob > threshold
    labels, _ = ndimage.label(binary, structure=EIGHT_CONNECTED)
    found = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        comp = labels[sl] == i
        if above is not None and (prob[sl][comp] > above).any():
            continue
        if cfg.min_area <= int(comp.sum()) <= cfg.max_area:
            found.append((float(prob[sl][comp].max()), sl, comp))
    found.sort(key=lambda c: -c[0])
    h, w = prob.shape
    out = []
    for score, (ys, xs), comp in found[: cfg.max_detections]:
        y0, y1 = max(ys.start - BACKGROUND_MARGIN, 0), min(ys.stop + BACKGROUND_MARGIN, h)
        x0, x1 = max(xs.start - BACKGROUND_MARGIN, 0), min(xs.stop + BACKGROUND_MARGIN, w)
        bg = intensity[y0:y1, x0:x1][~binary[y0:y1, x0:x1]].astype(np.float64)
        vals = intensity[ys, xs][comp].astype(np.float64)
        peak = float(vals.max())
        if bg.size:
            bg_mean, bg_std = float(bg.mean()), float(bg.std()) if bg.size > 1 else 0.0
            weights = np.clip(vals - bg_mean, 0.0, None)
            snr = float("inf") if peak > bg_mean else 0.0
            if bg_std > 0:
                snr = (peak - bg_mean) / bg_std
            contrast = float(vals.mean()) - bg_mean
        else:
            weights, snr, contrast = np.zeros_like(vals), 0.0, 0.0
        if weights.sum() <= 0:
            weights = np.ones_like(vals)
        cy, cx = np.nonzero(comp)
        out.append((
            score, xs.start, ys.start, int(comp.sum()),
            xs.start + float((cx * weights).sum()) / float(weights.sum()),
            ys.start + float((cy * weights).sum()) / float(weights.sum()),
            peak, float(vals.mean()), contrast, snr,
        ))
    return out


def _fields(targets):
    return [(t.score, t.x, t.y, t.area, t.centroid_x, t.centroid_y, t.peak_intensity,
             t.mean_intensity, t.local_contrast, t.snr) for t in targets]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("seed", range(3))
def test_target_statistics_are_those_of_numpy_s_mean_and_std_bit_for_bit(dtype, seed):
    """Cluttered random maps (hundreds of components, many outside the area limits, more
    than max_detections): every target's and candidate's statistics equal exactly what
    numpy's ``mean``, ``std`` and ``clip`` give on its pixels (the fast path sums and
    divides as they do; no tolerance)."""
    rng = np.random.default_rng(seed)
    prob = (rng.random((90, 120)) ** 4).astype(np.float32)  # a distinct score per component
    scale = 60.0 if dtype == np.uint8 else 3000.0
    intensity = (rng.normal(2, 0.3, prob.shape) * scale + prob * scale).astype(dtype)
    cfg = PostprocessConfig(threshold=0.5, min_area=2, max_area=12, max_detections=25)
    _, targets = extract_targets(prob, intensity, cfg)
    assert len(targets) == 25
    assert _fields(targets) == _reference_targets(prob, intensity, cfg, 0.5)
    candidates = extract_candidates(prob, intensity, cfg, 0.3)
    assert candidates
    assert _fields(candidates) == _reference_targets(prob, intensity, cfg, 0.3, above=0.5)
