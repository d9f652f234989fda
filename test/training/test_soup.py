from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _support.checkpoints import diverged_checkpoint
from _support.cli import one_error_line, run_cli
from _support.files import unwritable_folder
from safetensors import SafetensorError

from irstd_ros import checkpoint
from irstd_ros.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from irstd_ros.cli import soup as cli_soup
from irstd_ros.core.normalization import InputNorm
from irstd_ros.errors import CheckpointError, ConfigError
from irstd_ros.inference.backends.fingerprint import weights_digest
from irstd_ros.models import build_model, named_config
from irstd_ros.training.soup import SoupConfig, average_models, soup, soup_coefficients

NORM = InputNorm(kind="robust", background=16)


def _checkpoint(path, name="tiny", seed=0, norm=NORM, extra=None):
    torch.manual_seed(seed)
    model = build_model(named_config(name))
    with torch.no_grad():  # BatchNorm statistics that differ between the inputs
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.num_batches_tracked.fill_(seed + 1)
    save_checkpoint(path, model, CheckpointInfo(named_config(name), norm, 0.3, dict(extra or {})))
    return model.eval()


def test_soup_is_the_weighted_average_of_every_float_tensor(tmp_path):
    a = _checkpoint(tmp_path / "a.safetensors", seed=1, extra={"data": "A", "calibration": {"a": 1}})
    b = _checkpoint(tmp_path / "b.safetensors", seed=2, extra={"data": "B"})
    record = soup(SoupConfig((tmp_path / "a.safetensors", tmp_path / "b.safetensors"),
                             tmp_path / "s.safetensors", (0.25, 0.75)))
    model, info, _ = load_checkpoint(tmp_path / "s.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.25 * sa[key] + 0.75 * sb[key])
        else:  # the step counter is the first input's
            assert torch.equal(value, sa[key])
    assert [p["coefficient"] for p in record["parents"]] == [0.25, 0.75]
    assert record["parents"][0]["weights_sha256"] != record["parents"][1]["weights_sha256"]
    assert info.extra["soup"] == record and info.extra["data"] == ["A", "B"]  # all data seen
    assert [p["data"] for p in record["parents"]] == ["A", "B"]
    assert "calibration" not in info.extra  # a calibration of one parent no longer applies
    assert info.threshold == 0.3 and info.norm == NORM


def test_an_average_of_identical_models_computes_the_same_logits(tmp_path):
    model = _checkpoint(tmp_path / "a.safetensors", seed=3)
    averaged = build_model(named_config("tiny")).eval()
    averaged.load_state_dict(average_models([model, load_checkpoint(tmp_path / "a.safetensors")[0]], (0.5, 0.5)))
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(averaged(x), model(x))


def test_soup_refuses_a_checkpoint_given_twice_or_copied(tmp_path):
    """`irstd soup a a` (or a and its copy, or a symlink to it) averaged a file with itself
    and recorded a soup of two."""
    a = tmp_path / "a.safetensors"
    _checkpoint(a, seed=3, extra={"data": "A"})
    _checkpoint(tmp_path / "b.safetensors", seed=4)
    (tmp_path / "link.safetensors").symlink_to(a)
    _checkpoint(tmp_path / "copy.safetensors", seed=3, extra={"data": "other metadata"})  # the same weights
    cases = {
        "a.safetensors": f"checkpoint {a} is the same file as {a}",
        "sub/../a.safetensors": f"checkpoint {tmp_path / 'sub/../a.safetensors'} is the same file as {a}",
        "link.safetensors": f"checkpoint {tmp_path / 'link.safetensors'} is the same file as {a}",
        "copy.safetensors": f"checkpoint {tmp_path / 'copy.safetensors'} holds the same weights as {a}",
    }
    for other, message in cases.items():
        with pytest.raises(ConfigError) as caught:
            soup(SoupConfig((a, tmp_path / "b.safetensors", tmp_path / other), tmp_path / "s.safetensors"))
        assert message in str(caught.value)
    assert not (tmp_path / "s.safetensors").exists()


def test_a_copy_with_a_two_piece_knee_is_the_same_network(tmp_path):
    # its knee is left out of the average: what is averaged is the plain network twice
    model = _checkpoint(tmp_path / "a.safetensors", seed=3)
    kneed = replace(named_config("tiny"), logit_knee=True)
    with_knee = build_model(kneed)
    with_knee.load_state_dict(model.state_dict(), strict=False)
    with_knee.knee.set(-2.0, 3.0)
    save_checkpoint(tmp_path / "k.safetensors", with_knee, CheckpointInfo(kneed, NORM, 0.5, {}))
    with pytest.raises(ConfigError, match="k.safetensors holds the same weights as"):
        soup(SoupConfig((tmp_path / "a.safetensors", tmp_path / "k.safetensors"), tmp_path / "s.safetensors"))


@pytest.mark.parametrize(
    ("count", "given", "message"),
    [(1, None, "at least two"), (2, [1.0], "one per checkpoint"), (2, [0.5, 0.6], "sum to 1"),
     (2, [1.5, -0.5], "positive"), (3, None, None)],
)
def test_soup_coefficients(count, given, message):
    if message is None:
        assert soup_coefficients(count, given) == pytest.approx((1 / 3,) * 3)
        return
    with pytest.raises(ConfigError, match=message):
        soup_coefficients(count, given)


def test_soup_refuses_different_networks_and_normalisations(tmp_path):
    _checkpoint(tmp_path / "a.safetensors")
    _checkpoint(tmp_path / "fast.safetensors", name="fast")
    _checkpoint(tmp_path / "norm.safetensors", norm=InputNorm(kind="robust", background=32))
    for other, message in (("fast", "different network"), ("norm", "different input normalisation")):
        with pytest.raises(ConfigError, match=message):
            soup(SoupConfig((tmp_path / "a.safetensors", tmp_path / f"{other}.safetensors"),
                            tmp_path / "s.safetensors"))
    assert not (tmp_path / "s.safetensors").exists()


def test_soup_cli_writes_the_average_and_fails_in_one_line(capsys, tmp_path):
    _checkpoint(tmp_path / "a.safetensors", seed=1)
    _checkpoint(tmp_path / "b.safetensors", seed=2)
    paths = [str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]
    code, _ = run_cli(capsys, "soup", *paths, "--out", str(tmp_path / "s.safetensors"))
    assert code == 0 and (tmp_path / "s.safetensors").is_file()
    code, err = run_cli(capsys, "soup", *paths, "--out", str(tmp_path / "t.safetensors"),
                        "--coefficients", "0.5", "0.4")
    assert code == 2 and "sum to 1" in one_error_line(err)
    code, err = run_cli(capsys, "soup", paths[0], str(tmp_path / "missing.safetensors"),
                        "--out", str(tmp_path / "t.safetensors"))
    assert code == 2 and "not found" in one_error_line(err)
    code, err = run_cli(capsys, "soup", paths[0], paths[0], "--out", str(tmp_path / "t.safetensors"))
    assert code == 2 and f"{paths[0]} is the same file as {paths[0]}" in one_error_line(err)
    assert not (tmp_path / "t.safetensors").exists()


def test_a_different_network_is_named_by_the_fields_that_differ(tmp_path):
    _checkpoint(tmp_path / "fast.safetensors", name="fast")
    widths = named_config("fast").widths
    other = replace(named_config("fast"), stem=1, refine=4)
    save_checkpoint(tmp_path / "other.safetensors", build_model(other), CheckpointInfo(other, NORM, 0.3))
    with pytest.raises(ConfigError) as caught:
        soup(SoupConfig((tmp_path / "fast.safetensors", tmp_path / "other.safetensors"), tmp_path / "s.safetensors"))
    message = str(caught.value)
    assert f"different network than {tmp_path / 'fast.safetensors'} (stem: 1 vs 2, refine: 4 vs 0)" in message
    assert str(list(widths)) not in message  # the widths agree: not shown


def test_soup_refuses_a_parent_with_non_finite_weights(tmp_path):
    _checkpoint(tmp_path / "a.safetensors")
    model = _checkpoint(tmp_path / "b.safetensors", seed=1)
    diverged_checkpoint(tmp_path / "b.safetensors", model, CheckpointInfo(named_config("tiny"), NORM, 0.3),
                        "head.weight", float("nan"))
    with pytest.raises(CheckpointError, match="b.safetensors has non-finite values in tensor head.weight"):
        soup(SoupConfig((tmp_path / "a.safetensors", tmp_path / "b.safetensors"), tmp_path / "s.safetensors"))
    assert not (tmp_path / "s.safetensors").exists()


def test_soup_cli_checks_out_before_loading_anything(capsys, tmp_path, monkeypatch):
    _checkpoint(tmp_path / "a.safetensors", seed=1)
    _checkpoint(tmp_path / "b.safetensors", seed=2)
    paths = [str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]
    monkeypatch.setattr(cli_soup, "soup", lambda *a, **k: pytest.fail("soup ran before --out was checked"))
    ro = unwritable_folder(monkeypatch, tmp_path)
    code, err = run_cli(capsys, "soup", *paths, "--out", str(ro / "s.safetensors"))
    assert code == 2 and "--out" in one_error_line(err) and "not writable" in err
    code, err = run_cli(capsys, "soup", *paths, "--out", str(tmp_path))
    assert code == 2 and "is a directory" in one_error_line(err)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_soup_cli_where_no_file_can_be_written_fails_in_one_line(capsys, tmp_path):
    _checkpoint(tmp_path / "a.safetensors", seed=1)
    _checkpoint(tmp_path / "b.safetensors", seed=2)
    paths = [str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]
    # refused up front or when written (as root os.access calls /proc writable): one line either way
    code, err = run_cli(capsys, "soup", *paths, "--out", "/proc/irstd_test.safetensors")
    assert code == 2 and "/proc/irstd_test.safetensors" in one_error_line(err)


def test_soup_cli_a_write_that_fails_anyway_is_one_line(capsys, tmp_path, monkeypatch):
    _checkpoint(tmp_path / "a.safetensors", seed=1)
    _checkpoint(tmp_path / "b.safetensors", seed=2)

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)  # --out passes its check, the write fails
    out = tmp_path / "s.safetensors"
    code, err = run_cli(capsys, "soup", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                        "--out", str(out))
    assert code == 2 and f"cannot write model file {out}: " in one_error_line(err) and "No space" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]  # nor a temporary


def test_soup_keeps_the_first_parent_s_operating_point_whole(tmp_path):
    _checkpoint(tmp_path / "a.safetensors", seed=1)
    model, info, _ = load_checkpoint(tmp_path / "a.safetensors")
    calibrated = replace(info, threshold=0.534, candidate_threshold=0.415, gated_threshold=0.2)
    save_checkpoint(tmp_path / "a.safetensors", model, calibrated)
    _checkpoint(tmp_path / "b.safetensors", seed=2)
    soup(SoupConfig((tmp_path / "a.safetensors", tmp_path / "b.safetensors"), tmp_path / "s.safetensors"))
    _, out, _ = load_checkpoint(tmp_path / "s.safetensors")
    assert (out.threshold, out.candidate_threshold, out.gated_threshold) == (0.534, 0.415, 0.2)


def test_a_soup_of_soups_still_knows_which_weights_hold_a_calibration(tmp_path, caplog):
    """The first soup dropped its calibrated parent's record: averaged again, the folded
    calibration inside it went unmentioned."""
    _checkpoint(tmp_path / "cal.safetensors", seed=1, extra={"calibration": {"a": 0.7, "b": -1.7}})
    _checkpoint(tmp_path / "raw.safetensors", seed=2)
    _checkpoint(tmp_path / "raw2.safetensors", seed=3)
    first = soup(SoupConfig((tmp_path / "cal.safetensors", tmp_path / "raw.safetensors"), tmp_path / "s1.safetensors"))
    assert first["parents"][0]["calibration"] == {"a": 0.7, "b": -1.7}
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = soup(SoupConfig((tmp_path / "s1.safetensors", tmp_path / "raw2.safetensors"), tmp_path / "s2.safetensors"))
    assert "mixes their calibrations" in caplog.text and "s1.safetensors" in caplog.text
    assert again["parents"][0]["soup"]["parents"][0]["calibration"] == {"a": 0.7, "b": -1.7}
    caplog.clear()
    with caplog.at_level("WARNING"):
        soup(SoupConfig((tmp_path / "raw.safetensors", tmp_path / "raw2.safetensors"), tmp_path / "s3.safetensors"))
    assert "calibrations" not in caplog.text


@pytest.mark.parametrize("record", [[1], "x", {"parents": 5}])
def test_a_soup_record_of_another_shape_is_averaged_as_one_without_parents(tmp_path, record):
    """A downloaded file whose ``extra.soup`` was no mapping of a parents list made
    ``irstd soup`` fail with AttributeError or TypeError, a traceback."""
    _checkpoint(tmp_path / "odd.safetensors", seed=1, extra={"soup": record})
    _checkpoint(tmp_path / "raw.safetensors", seed=2)
    made = soup(SoupConfig((tmp_path / "odd.safetensors", tmp_path / "raw.safetensors"), tmp_path / "s.safetensors"))
    assert made["parents"][0]["soup"] == record
    assert load_checkpoint(tmp_path / "s.safetensors")[1].extra["soup"] == made


def test_a_parent_s_trainer_and_device_stay_its_own_not_the_average_s(tmp_path):
    """A GPU run's record of its trainer and card (and a widened start's init) was kept
    as the soup's own, as if the average had been trained there."""
    gpu = {"trainer": "irstd_ros.training.gpu", "device": "cuda:0 (H200)", "data": "A"}
    _checkpoint(tmp_path / "a.safetensors", seed=1, extra={**gpu, "recipe": "r"})
    _checkpoint(tmp_path / "b.safetensors", seed=2, extra={"init": "narrow.safetensors", "data": "B"})
    parents = soup(SoupConfig((tmp_path / "a.safetensors", tmp_path / "b.safetensors"),
                              tmp_path / "s.safetensors"))["parents"]
    extra = load_checkpoint(tmp_path / "s.safetensors")[1].extra
    assert not {"trainer", "device", "init", "recipe"} & set(extra) and extra["data"] == ["A", "B"]
    assert {k: parents[0][k] for k in gpu} == gpu and parents[1]["init"] == "narrow.safetensors"


def test_two_piece_calibrated_parents_are_averaged_without_their_knees(tmp_path, caplog):
    """Each knee was fit to its own network: averaged, it was no calibration of the result,
    which kept `logit_knee` and so could not be calibrated again (--two-piece refused it)."""
    kneed = replace(named_config("tiny"), logit_knee=True)
    for name, seed, knee in (("a", 1, -2.0), ("b", 2, -4.0)):
        torch.manual_seed(seed)
        model = build_model(kneed)
        model.knee.set(knee, 3.0)
        save_checkpoint(tmp_path / f"{name}.safetensors", model, CheckpointInfo(kneed, NORM, 0.5, {}))
    plain = _checkpoint(tmp_path / "c.safetensors", seed=3)  # and one without: the same network
    paths = tuple(tmp_path / f"{n}.safetensors" for n in "abc")
    soup(SoupConfig(paths, tmp_path / "s.safetensors"))
    model, info, _ = load_checkpoint(tmp_path / "s.safetensors")
    assert not info.model.logit_knee and not any(k.startswith("knee.") for k in model.state_dict())
    assert sum("knee is left out" in r.message for r in caplog.records) == 2
    recorded = [parent["weights_sha256"] for parent in info.extra["soup"]["parents"]]
    assert recorded == [weights_digest(*load_checkpoint(p)[:2]) for p in paths]  # the files', knees too
    parents = [load_checkpoint(p)[0].state_dict() for p in paths[:2]] + [plain.state_dict()]
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, sum(s[key] for s in parents) / 3)


def test_an_average_of_parents_at_other_thresholds_says_whose_it_took(tmp_path, caplog):
    """The first parent's thresholds are the average's; parents at others were averaged
    without a word, and the first's hand-stamped operating point was carried over."""
    _checkpoint(tmp_path / "a.safetensors", extra={"operating_point": {"threshold": 0.95}})
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "b.safetensors", build_model(named_config("tiny")),
                    CheckpointInfo(named_config("tiny"), NORM, 0.2))
    with caplog.at_level("WARNING"):
        soup(SoupConfig((tmp_path / "a.safetensors", tmp_path / "b.safetensors"), tmp_path / "s.safetensors"))
    _, info, _ = load_checkpoint(tmp_path / "s.safetensors")
    assert info.threshold == 0.3 and "operating_point" not in info.extra
    assert "takes" in caplog.text and str(tmp_path / "b.safetensors") in caplog.text
