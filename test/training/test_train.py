import json

import numpy as np
import pytest
from PIL import Image

from irstd_ros.checkpoint import load_checkpoint
from irstd_ros.errors import ConfigError
from irstd_ros.training.train import TrainConfig, lr_at, train

SIZE = 32


def blob_dataset(root, n=8, seed=0):
    if root.exists():
        return root
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stems = []
    for i in range(n):
        img = rng.normal(60, 8, (SIZE, SIZE)).clip(0, 255)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        y, x = rng.integers(4, SIZE - 6, 2)
        img[y : y + 3, x : x + 3] = 230
        mask[y : y + 3, x : x + 3] = 255
        Image.fromarray(img.astype(np.uint8)).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
        stems.append(f"{i:03d}")
    (root / "train.txt").write_text("\n".join(stems))
    return root


def config(tmp_path, **kw):
    base = dict(
        data=blob_dataset(tmp_path / "data"), out=tmp_path / "run", model="tiny", epochs=12,
        batch_size=4, lr=3e-3, crop=SIZE, device="cpu", threads=1, seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_a_few_steps_lower_the_loss_and_write_a_loadable_model(tmp_path):
    final = train(config(tmp_path))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    losses = [h["loss"] for h in history]
    assert np.mean(losses[-3:]) < losses[0] - 0.05, losses
    model, info, _ = load_checkpoint(final)
    assert info.model.arch == "sgem_unet"
    assert 0.0 < info.norm.mean < 1.0 and info.norm.std > 0
    assert info.extra["data"]["images"] == 8


def test_resume_continues_from_the_last_epoch(tmp_path):
    train(config(tmp_path, epochs=2))
    train(config(tmp_path, epochs=3))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_resume_refuses_another_model(tmp_path):
    train(config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="another model config"):
        train(config(tmp_path, epochs=2, model="small"))


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(data=tmp_path, schedule="step")
    with pytest.raises(ConfigError):
        TrainConfig(data=tmp_path, epochs=0)


def test_cosine_schedule_ends_at_min_lr(tmp_path):
    cfg = TrainConfig(data=tmp_path, epochs=10, lr=1e-3, min_lr=1e-5, schedule="cosine")
    assert lr_at(cfg, 0) == pytest.approx(1e-3)
    assert lr_at(cfg, 9) == pytest.approx(1e-5)
