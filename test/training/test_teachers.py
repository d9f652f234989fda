from pathlib import Path

import pytest
import torch

from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.core.normalization import InputNorm
from irstd_ros.errors import CheckpointError, ConfigError
from irstd_ros.models import build_model, named_config
from irstd_ros.training.teachers import Teachers

NORM = InputNorm(kind="robust", background=32)


def _checkpoint(path, seed, norm=NORM):
    torch.manual_seed(seed)
    model = build_model(named_config("tiny")).eval()
    save_checkpoint(path, model, CheckpointInfo(model=named_config("tiny"), norm=norm))
    return path


def test_each_sample_gets_the_mean_logits_of_its_own_set(tmp_path):
    a, b = _checkpoint(tmp_path / "a.safetensors", 1), _checkpoint(tmp_path / "b.safetensors", 2)
    teachers = Teachers([(a,), (a, b), (), (a, a, b)], NORM, torch.device("cpu"))
    assert len(teachers.models) == 2
    img = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    source = torch.tensor([0, 1, 2, 1, 3])
    logits, taught = teachers.logits(img, source)
    with torch.no_grad():
        la, lb = (load_checkpoint(p)[0].eval()(img) for p in (a, b))
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[0], la[0], **close)
    torch.testing.assert_close(logits[[1, 3]], (la[[1, 3]] + lb[[1, 3]]) / 2, **close)
    assert torch.equal(logits[2], torch.zeros_like(logits[2]))
    torch.testing.assert_close(logits[4], (2 * la[4] + lb[4]) / 3, **close)  # named twice, counted twice
    assert taught.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert bool(teachers) and not Teachers([(), ()], NORM, torch.device("cpu"))


def test_one_file_named_by_two_paths_is_loaded_once(tmp_path, monkeypatch):
    a = _checkpoint(tmp_path / "a.safetensors", 1)
    monkeypatch.chdir(tmp_path)
    teachers = Teachers([(a,), (Path("a.safetensors"),)], NORM, torch.device("cpu"))
    assert len(teachers.models) == 1


def test_a_missing_or_differently_normalised_teacher_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Teachers([(tmp_path / "none.safetensors",)], NORM, torch.device("cpu"))
    other = _checkpoint(tmp_path / "g.safetensors", 1, InputNorm(kind="global"))
    with pytest.raises(ConfigError, match="normalises inputs"):
        Teachers([(other,)], NORM, torch.device("cpu"))


def test_one_set_for_every_sample_runs_the_batch_whole_with_the_same_logits(tmp_path, monkeypatch):
    """The GPU trainer's teachers (one set): the per-sample selection cost a host sync per
    step on a GPU; the whole batch goes through each model, and the logits are the general
    path's."""
    a, b = _checkpoint(tmp_path / "a.safetensors", 1), _checkpoint(tmp_path / "b.safetensors", 2)
    img = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    source = torch.zeros(4, dtype=torch.long)
    uniform = Teachers([(a, a, b)], NORM, torch.device("cpu"))
    general = Teachers([(a, a, b), (a,)], NORM, torch.device("cpu"))  # two sets: per sample
    assert uniform.uniform is not None and general.uniform is None
    seen = []
    for model in uniform.models.values():
        model.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].shape[0]))
    got, taught = uniform.logits(img, source)
    want, want_taught = general.logits(img, source)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(taught, want_taught) and seen == [4, 4]  # a once (counted twice), b once
    assert Teachers([(a,), (a,)], NORM, torch.device("cpu")).uniform == (a.resolve(),)
