"""Bag tools on image_transport's ``compressed`` stream: an Image topic recorded as
sensor_msgs/CompressedImage (png, jpeg) is read through the node's one decoder, and a
lossless PNG copy gives exactly what the raw frames give."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from _support.bags import COMPRESSED_TOPIC, TINY, compressed_copy, make_bag
from _support.cli import one_error_line, run_cli
from _support.compressed import encode

from irstd_ros.bags.evaluate import EvalBagConfig, evaluate_bag
from irstd_ros.bags.io import TRUTH_MASK_TOPIC, BagReader
from irstd_ros.bags.render import RenderConfig, render
from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.targets import PostprocessConfig, extract_targets
from irstd_ros.inference.detector import DetectionResult
from irstd_ros.models import named_config


class ThresholdDetector:
    """Bright pixels are targets; keeps every frame it was given."""

    info = CheckpointInfo(named_config("tiny"))

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def detect(self, frame: np.ndarray) -> DetectionResult:
        self.frames.append(frame)
        prob = (frame > np.percentile(frame, 99.5)).astype(np.float32)
        mask, targets = extract_targets(prob, frame, PostprocessConfig(threshold=0.5))
        return DetectionResult(prob, mask, targets, {"infer_ms": 1.0})


@pytest.fixture(scope="module", params=[8, 16], ids=["mono8", "mono16"])
def raw_and_png(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("compressed")
    raw = make_bag(d / "raw", bit_depth=request.param)
    return raw, compressed_copy(raw, d / "png", lambda a: encode(a, "png"))


def test_the_reader_decodes_a_png_topic_to_the_raw_frames(raw_and_png):
    raw, png = raw_and_png
    with BagReader(raw) as r, BagReader(png) as c:
        frames = [r.image(t, m) for t, _, m in r.messages(["/camera/image"])]
        decoded = [c.image(t, m) for t, _, m in c.messages([COMPRESSED_TOPIC])]
        headers = [m.header for _, _, m in c.messages([COMPRESSED_TOPIC])]
    assert len(decoded) == len(frames) == TINY.frames
    for a, b in zip(frames, decoded):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert headers[0].frame_id and headers[0].stamp.sec + headers[0].stamp.nanosec > 0


def test_eval_bag_runs_the_detector_on_the_compressed_topic(raw_and_png, monkeypatch):
    from irstd_ros.inference import detector as det_mod

    seen: list[ThresholdDetector] = []

    def fake(cls, *a, **k):
        seen.append(ThresholdDetector())
        return seen[-1]

    monkeypatch.setattr(det_mod.Detector, "from_checkpoint", classmethod(fake))
    raw, png = raw_and_png
    a = evaluate_bag(EvalBagConfig(raw, run_detector=True))
    b = evaluate_bag(EvalBagConfig(png, run_detector=True, image_topic=COMPRESSED_TOPIC))
    assert len(seen[1].frames) == TINY.frames
    for x, y in zip(seen[0].frames, seen[1].frames):
        assert np.array_equal(x, y)
    keys = ("pd", "fa", "iou", "frames", "targets", "detected", "false_px")
    assert {k: b[k] for k in keys} == {k: a[k] for k in keys} and b["frames"] == TINY.frames
    assert b["detected"] > 0  # the frames' targets were found: a comparison of something


def test_truth_boxes_take_their_frame_size_from_the_compressed_topic(tmp_path, monkeypatch):
    """Without a truth mask topic, the truth boxes are drawn at the scored topic's size."""
    from irstd_ros.inference import detector as det_mod

    monkeypatch.setattr(
        det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: ThresholdDetector())
    )
    raw = make_bag(tmp_path / "raw", frames=2)
    png = compressed_copy(raw, tmp_path / "png", lambda a: encode(a, "png"), drop=(TRUTH_MASK_TOPIC,))
    r = evaluate_bag(EvalBagConfig(png, run_detector=True, image_topic=COMPRESSED_TOPIC))
    assert r["frames"] == 2 and r["mask_source"] and r["targets"] > 0


def test_render_draws_the_compressed_topic_as_the_raw_one(raw_and_png, tmp_path):
    raw, png = raw_and_png
    render(RenderConfig(raw, tmp_path / "raw.gif"))
    s = render(RenderConfig(png, tmp_path / "png.gif", image_topic=COMPRESSED_TOPIC))
    assert s.frames == TINY.frames
    a, b = list(iio.imiter(tmp_path / "raw.gif")), list(iio.imiter(tmp_path / "png.gif"))
    assert len(a) == len(b) == TINY.frames
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_jpeg_topic_is_read_close_to_the_frames(tmp_path):
    raw = make_bag(tmp_path / "raw")
    jpeg = compressed_copy(raw, tmp_path / "jpeg", lambda a: encode(a, "jpeg", quality=95), "jpeg")
    with BagReader(raw) as r, BagReader(jpeg) as c:
        frames = [r.image(t, m) for t, _, m in r.messages(["/camera/image"])]
        decoded = [c.image(t, m) for t, _, m in c.messages([COMPRESSED_TOPIC])]
    assert len(decoded) == TINY.frames
    for a, b in zip(frames, decoded):
        assert b.dtype == np.uint8 and b.shape == a.shape
        assert np.abs(a.astype(int) - b).mean() < 3


@pytest.mark.parametrize(
    "fmt, needle",
    [("16UC1; compressedDepth", "compressedDepth"), ("h264", "'h264' is not supported")],
)
def test_an_unsupported_compressed_topic_is_one_error_line(tmp_path, capsys, fmt, needle):
    raw = make_bag(tmp_path / "raw", frames=2)
    bag = compressed_copy(raw, tmp_path / "bad", lambda a: encode(a, "png"), fmt)
    out = tmp_path / "v.gif"
    code, err = run_cli(capsys, "render", str(bag), "--out", str(out), "--image-topic", COMPRESSED_TOPIC)
    line = one_error_line(err)
    assert code == 2 and needle in line and COMPRESSED_TOPIC in line and "at stamp" in line
    assert not out.exists()
