import json

import pytest
import torch
from safetensors.torch import save_file

from irstd_ros.checkpoint import (
    METADATA_KEY,
    CheckpointInfo,
    InputNorm,
    load_checkpoint,
    read_info,
    save_checkpoint,
)
from irstd_ros.core.constants import CANDIDATE_THRESHOLD, GATED_THRESHOLD
from irstd_ros.errors import CheckpointError, ConfigError
from irstd_ros.models import build_model, named_config


@pytest.fixture
def tiny_ckpt(tmp_path):
    model = build_model(named_config("tiny"))
    info = CheckpointInfo(named_config("tiny"), InputNorm(0.2, 0.1), 0.4, {"metrics": {"iou": 0.5}})
    return save_checkpoint(tmp_path / "m.safetensors", model, info), model


def test_round_trip_keeps_weights_and_config(tiny_ckpt):
    path, model = tiny_ckpt
    loaded, info, extra = load_checkpoint(path)
    assert info.model == named_config("tiny")
    assert info.norm == InputNorm(0.2, 0.1)
    assert info.threshold == 0.4
    assert info.extra["metrics"]["iou"] == 0.5
    assert extra == {}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tiny_ckpt, tmp_path):
    path, _ = tiny_ckpt
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(bad)


def test_garbage_and_pickle_files_are_refused(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, bad)  # a pickle: must never be unpickled
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(bad)


def test_file_without_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no irstd_ros configuration"):
        read_info(path)


def test_mismatched_architecture_is_named(tiny_ckpt):
    path, _ = tiny_ckpt
    with pytest.raises(CheckpointError, match="holds architecture 'sgem_unet', expected 'other'"):
        load_checkpoint(path, expect_arch="other")


def test_weights_that_do_not_fit_the_config(tmp_path):
    small = build_model(named_config("small"))
    info = CheckpointInfo(named_config("tiny"))
    path = tmp_path / "lie.safetensors"
    tensors = {k: v.contiguous() for k, v in small.state_dict().items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: info.to_json()})
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(path)


def test_invalid_metadata_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps({"x": 1})})
    with pytest.raises(CheckpointError, match="invalid configuration"):
        read_info(path)


def test_tracker_thresholds_are_the_checkpoints_own_and_saved_only_when_set(tmp_path):
    model = build_model(named_config("tiny"))
    plain = CheckpointInfo(named_config("tiny"))
    assert plain.own_tracking_thresholds() == (CANDIDATE_THRESHOLD, GATED_THRESHOLD)
    assert "candidate_threshold" not in json.loads(plain.to_json())  # older files unchanged
    own = CheckpointInfo(named_config("tiny"), candidate_threshold=0.53, gated_threshold=0.41)
    info = read_info(save_checkpoint(tmp_path / "m.safetensors", model, own))
    assert info.own_tracking_thresholds() == (0.53, 0.41)
    # < 0: the checkpoint's own; 0: off; > 0: as given
    assert info.tracking_thresholds() == (0.53, 0.41)
    assert info.tracking_thresholds(0.0, -1.0) == (None, 0.41)
    assert info.tracking_thresholds(0.7, 0.0) == (0.7, None)
    assert plain.tracking_thresholds(-1.0, 0.1) == (CANDIDATE_THRESHOLD, 0.1)
    with pytest.raises(ConfigError, match="gated threshold 0.41 must be below the candidate threshold 0.3"):
        info.tracking_thresholds(0.3, -1.0)


def test_detection_threshold_below_zero_is_the_checkpoints_own():
    info = CheckpointInfo(named_config("tiny"), threshold=0.534)
    assert info.detection_threshold() == 0.534
    assert info.detection_threshold(-0.5) == 0.534
    assert info.detection_threshold(0.3) == 0.3
    assert info.detection_threshold(0.0) == 0.0  # 0 is a threshold here, not "off"
