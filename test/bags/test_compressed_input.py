"""Bag tools on image_transport's ``compressed`` stream: an Image topic recorded as
sensor_msgs/CompressedImage (png, jpeg) is read through the node's one decoder, and a
lossless PNG copy gives exactly what the raw frames give."""

from __future__ import annotations

from collections import Counter

import imageio.v3 as iio
import numpy as np
import pytest
from _support.bags import COMPRESSED_TOPIC, TINY, compressed_copy, make_bag
from _support.cli import one_error_line, run_cli
from _support.compressed import encode, png_by_hand

from irstd_ros.bags.evaluate import EvalBagConfig, evaluate_bag
from irstd_ros.bags.io import TRUTH_MASK_TOPIC, TRUTH_TARGETS_TOPIC, BagReader, BagWriter
from irstd_ros.bags.render import RenderConfig, render
from irstd_ros.checkpoint import CheckpointInfo
from irstd_ros.core.stamps import stamp_ns
from irstd_ros.core.targets import PostprocessConfig, extract_targets
from irstd_ros.errors import BagError, ImageConversionError
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


def test_truth_boxes_without_the_image_topic_name_the_bags_image_topics(tmp_path):
    """It was "holds no image to take the frame size from" of a bag of CompressedImage
    frames on another topic than --image-topic."""
    raw = make_bag(tmp_path / "raw", frames=2)
    png = compressed_copy(raw, tmp_path / "png", lambda a: encode(a, "png"), drop=(TRUTH_MASK_TOPIC,))
    with pytest.raises(BagError) as info:
        evaluate_bag(EvalBagConfig(png, outputs=raw))
    assert str(info.value) == (
        f"{png} has no frame on /camera/image to take the frame size from; its image topics: "
        f"{COMPRESSED_TOPIC} (sensor_msgs/msg/CompressedImage): choose one with --image-topic"
    )


class _Reads:
    """Messages read per topic and CompressedImage frames decoded, over an ``irstd eval-bag``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from irstd_ros.ros import conversions

        self.messages: Counter[str] = Counter()
        self.decoded = 0
        read, decode = BagReader.raw_messages, conversions.compressed_to_array

        def raw_messages(reader, topics=None, start_ns=None):
            for item in read(reader, topics, start_ns):
                self.messages[item[0]] += 1
                yield item

        def compressed_to_array(*args, **kwargs):
            self.decoded += 1
            return decode(*args, **kwargs)

        monkeypatch.setattr(BagReader, "raw_messages", raw_messages)
        monkeypatch.setattr(conversions, "compressed_to_array", compressed_to_array)


FRAMES = 3


@pytest.fixture
def png_truth_boxes(tmp_path):
    """A bag of :data:`FRAMES` PNG frames whose truth is boxes only (filled at the frames' size)."""
    raw = make_bag(tmp_path / "raw", frames=FRAMES)
    return compressed_copy(raw, tmp_path / "png", lambda a: encode(a, "png"), drop=(TRUTH_MASK_TOPIC,))


def test_eval_bag_reads_the_compressed_topic_once_with_the_detector(png_truth_boxes, monkeypatch):
    """The frames were read three times (the first frame's size, every frame's size, the
    detector's), each decoded each time: now once, by the detector, which keeps their sizes."""
    from irstd_ros.inference import detector as det_mod

    monkeypatch.setattr(
        det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: ThresholdDetector())
    )
    reads = _Reads(monkeypatch)
    r = evaluate_bag(EvalBagConfig(png_truth_boxes, run_detector=True, image_topic=COMPRESSED_TOPIC))
    assert r["frames"] == FRAMES and r["targets"] > 0
    assert (reads.messages[COMPRESSED_TOPIC], reads.decoded) == (FRAMES, FRAMES)


def test_eval_bag_takes_compressed_frame_sizes_from_their_headers(png_truth_boxes, tmp_path, monkeypatch):
    """Scoring recorded outputs against truth boxes needs the frames' sizes only: the topic
    is read once and no frame decoded (it was read twice and every frame decoded)."""
    outputs = tmp_path / "outputs"  # the truth boxes as the node's detections: all found
    with BagReader(png_truth_boxes) as r, BagWriter(outputs) as w:
        for _, t, msg in r.messages([TRUTH_TARGETS_TOPIC]):
            w.write("/detections", t, msg)
    reads = _Reads(monkeypatch)
    r = evaluate_bag(EvalBagConfig(png_truth_boxes, outputs=outputs, image_topic=COMPRESSED_TOPIC))
    assert r["frames"] == FRAMES and r["detected"] == r["targets"] > 0
    assert r["pixels_per_frame"] == TINY.width * TINY.height
    assert (reads.messages[COMPRESSED_TOPIC], reads.decoded) == (FRAMES, 0)


@pytest.mark.parametrize("run_detector", [False, True], ids=["sizes only", "detector"])
def test_a_compressed_frame_without_a_readable_header_names_the_bag_topic_and_stamp(
    tmp_path, monkeypatch, run_detector
):
    from irstd_ros.inference import detector as det_mod

    monkeypatch.setattr(
        det_mod.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: ThresholdDetector())
    )
    raw = make_bag(tmp_path / "raw", frames=2)
    frames = iter([b"not a png", None])

    def first_damaged(a):
        bad = next(frames)
        return bad if bad is not None else encode(a, "png")

    bag = compressed_copy(raw, tmp_path / "bad", first_damaged, drop=(TRUTH_MASK_TOPIC,))
    with BagReader(bag) as r:
        stamp = stamp_ns(next(m for _, _, m in r.messages([COMPRESSED_TOPIC])).header)
    if run_detector:
        cfg = EvalBagConfig(bag, run_detector=True, image_topic=COMPRESSED_TOPIC)
    else:
        cfg = EvalBagConfig(bag, outputs=bag, image_topic=COMPRESSED_TOPIC)
    with pytest.raises(BagError) as info:
        evaluate_bag(cfg)
    text = str(info.value)
    assert f"{bag}: {COMPRESSED_TOPIC} at stamp {stamp}:" in text
    assert "9 bytes of format" in text and "no readable PNG image" in text


def test_a_compressed_frame_s_size_is_its_header_s_and_refused_as_its_decoder_refuses():
    from irstd_ros.ros.conversions import compressed_size, compressed_to_array

    frame = (np.arange(12 * 7) % 251).astype(np.uint8).reshape(12, 7)
    for codec in ("png", "jpeg"):
        data = encode(frame, codec)
        assert compressed_size(codec, data) == compressed_to_array(codec, data).shape == (12, 7)
    for fmt, data, kind in [
        ("png", png_by_hand(frame, declared=(7000, 7000)), "too_large"),
        ("png", b"\x89PNG garbage", "undecodable"),
        ("16UC1; compressedDepth", encode(frame, "png"), "unsupported_format"),
    ]:
        with pytest.raises(ImageConversionError) as sized:
            compressed_size(fmt, data)
        with pytest.raises(ImageConversionError) as decoded:
            compressed_to_array(fmt, data)
        assert sized.value.kind == decoded.value.kind == kind


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
