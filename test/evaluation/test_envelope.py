import json

import numpy as np
import pytest

from irstd_ros.core.normalization import InputNorm, noise_sigma
from irstd_ros.errors import BackendError, ConfigError
from irstd_ros.evaluation.envelope import (
    POINT,
    EnvelopeConfig,
    envelope_frame,
    reached_below_grid,
    render_encoding,
    run_envelope,
    snr_at_pd,
    write_envelope,
)


class OracleBackend:
    """Scores each pixel by its normalised value: finds bright targets, not faint ones."""

    name = "oracle"
    device = "cpu"

    def predict(self, x):
        return (x > 2.0).astype(np.float32)

    def describe(self):
        return {}


def test_targets_have_the_asked_peak_snr_over_the_temporal_noise():
    cfg = EnvelopeConfig(width=192, height=160)
    counts, truth = envelope_frame(cfg, "flat", POINT, 12.0, np.random.default_rng(0))
    assert truth.any()
    assert noise_sigma(counts) == pytest.approx(cfg.noise, rel=0.1)
    peaks = counts[truth].max() - 3000.0
    assert 12 * cfg.noise * 0.7 < peaks < 12 * cfg.noise * 1.6  # peak pixel + noise


@pytest.mark.parametrize("encoding, dtype", [("mono8", np.uint8), ("mono16", np.uint16), ("32FC1", np.float32)])
def test_encodings_are_what_cameras_publish(encoding, dtype):
    counts = np.full((8, 8), 3000.0) + np.arange(64).reshape(8, 8)
    assert render_encoding(counts, encoding, np.random.default_rng(0)).dtype == dtype


def test_snr_at_pd_interpolates_and_says_never():
    assert snr_at_pd([2, 4, 8], [0.0, 0.8, 1.0]) == pytest.approx(4.0 + 0.1 / 0.2 * 4)
    assert snr_at_pd([2, 4], [0.95, 1.0]) == 2
    assert snr_at_pd([2, 4], [0.1, 0.5]) is None
    # a grid given out of order (irstd envelope --snrs 30 2 4) is read in SNR order
    assert snr_at_pd([30, 2, 4], [1.0, 0.1, 0.95]) == pytest.approx(2 + 0.8 / 0.85 * 2)


def test_snr_at_pd_is_where_pd_stays_above_the_goal_not_its_first_pass():
    """A pass at SNR 4 then a failure at 6 (noise): Pd 0.9 lasts only from between 6 and 8."""
    snrs, pds = [2, 4, 6, 8, 12], [0.5, 0.92, 0.85, 0.95, 1.0]
    assert snr_at_pd(snrs, pds) == pytest.approx(6 + 0.05 / 0.1 * 2)
    assert not reached_below_grid(snrs, pds)
    # the lowest SNR passes but a higher one fails: not below the grid either
    assert snr_at_pd([2, 4, 8], [0.95, 0.8, 0.92]) == pytest.approx(4 + 0.1 / 0.12 * 4)
    assert not reached_below_grid([2, 4, 8], [0.95, 0.8, 0.92])
    # passes below, the top fails: not reached within the grid
    assert snr_at_pd([2, 4, 8], [0.95, 1.0, 0.7]) is None


def test_a_goal_reached_at_the_lowest_grid_snr_is_marked_an_upper_bound():
    assert reached_below_grid([4, 2], [1.0, 0.95]) and snr_at_pd([4, 2], [1.0, 0.95]) == 2
    assert not reached_below_grid([2, 4], [0.5, 1.0])
    assert not reached_below_grid([], [])
    cfg = EnvelopeConfig(width=160, height=128, snrs=(30.0, 60.0), sizes=(POINT,), scenes=("flat",),
                         encodings=("32FC1",), frames=1)
    row = run_envelope(OracleBackend(), InputNorm(kind="robust", background=32), 0.5, cfg)["snr_at_pd90"][0]
    assert row["snr_at_pd90"] == 30.0 and row["below_grid"]


def test_an_extended_size_that_cannot_fit_the_frame_is_refused():
    EnvelopeConfig(width=160, height=128, sizes=("9216",)).validate()  # 96 px square fits
    with pytest.raises(ConfigError, match="does not fit a 160x128 frame"):
        EnvelopeConfig(width=160, height=128, sizes=("9217",)).validate()


def test_more_targets_than_a_frame_holds_are_refused_not_scored_on_fewer():
    EnvelopeConfig(width=64, height=64, targets_per_frame=1).validate()
    with pytest.raises(ConfigError, match="at most 1"):  # 32 px inside the margins: room for one
        EnvelopeConfig(width=64, height=64, targets_per_frame=2).validate()



def test_cells_short_of_targets_say_so(caplog):
    """Room for four on a grid, but random placement 40 px apart finds room for fewer: each
    cell counts the targets it held against those asked, and the run says so once."""
    cfg = EnvelopeConfig(width=73, height=73, targets_per_frame=4, frames=2, snrs=(10.0,),
                         sizes=(POINT,), scenes=("flat",), encodings=("32FC1",))
    cfg.validate()
    report = run_envelope(OracleBackend(), InputNorm(kind="robust"), 0.5, cfg)
    (cell,) = report["cells"]
    assert cell["targets_asked"] == 8 and cell["targets"] < 8
    assert caplog.text.count("hold fewer targets than asked") == 1


def test_report_grid_and_files(tmp_path):
    cfg = EnvelopeConfig(width=160, height=128, snrs=(3.0, 30.0), sizes=(POINT, "25"),
                         scenes=("flat", "gradient"))
    report = run_envelope(OracleBackend(), InputNorm(kind="robust", background=32), 0.5, cfg)
    assert len(report["cells"]) == 2 * 2 * 2 * 3
    bright = [c["pd"] for c in report["cells"] if c["snr"] == 30.0]
    faint = [c["pd"] for c in report["cells"] if c["snr"] == 3.0]
    assert min(bright) > max(faint)  # the envelope separates what is seen from what is not
    files = write_envelope(report, tmp_path, "oracle")
    assert json.loads(files[0].read_text())["config"]["width"] == 160
    assert files[1].stat().st_size > 5000


def test_a_cell_draws_the_same_frames_in_any_grid_that_holds_it():
    """``--snrs 30`` alone and ``--snrs 8 30``, ``--sizes 25`` alone and with ``point``: the
    shared cells see the very same frames (seeded by their values, not their place)."""
    seen: list[np.ndarray] = []

    class Recorder(OracleBackend):
        def predict(self, x):
            seen.append(x.copy())
            return super().predict(x)

    def run(cfg):
        """The report, and the detector's input by (scene, size, SNR, frame, encoding)."""
        seen.clear()
        report = run_envelope(Recorder(), InputNorm(kind="robust", background=32), 0.5, cfg)
        keys = [(scene, size, snr, f, enc) for scene in cfg.scenes for size in cfg.sizes
                for snr in cfg.snrs for f in range(cfg.frames) for enc in cfg.encodings]
        return report, dict(zip(keys, seen, strict=True))

    base = dict(width=128, height=96, targets_per_frame=2, frames=2, scenes=("flat", "cloud"),
                encodings=("mono8", "32FC1"))
    full, full_frames = run(EnvelopeConfig(snrs=(8.0, 30.0), sizes=(POINT, "25"), **base))
    part, part_frames = run(EnvelopeConfig(snrs=(30.0,), sizes=("25",), **base))
    assert len(part_frames) == 2 * 2 * 2
    for key, frame in part_frames.items():
        np.testing.assert_array_equal(frame, full_frames[key], err_msg=str(key))
    cells = {(c["scene"], c["encoding"], c["size"], c["snr"]): c for c in full["cells"]}
    for c in part["cells"]:
        assert c == cells[(c["scene"], c["encoding"], c["size"], c["snr"])]


@pytest.mark.parametrize("seed", range(6))
def test_targets_larger_than_the_edge_margin_are_clipped_at_the_frame_edge(seed):
    # an 800 px target is ~50 px across: placed 16 px from the edge, it crosses it (it was
    # a broadcast ValueError); what stays inside keeps its signal under its mask
    cfg = EnvelopeConfig(width=96, height=80, targets_per_frame=3)
    counts, truth = envelope_frame(cfg, "flat", "800", 30.0, np.random.default_rng(seed))
    assert counts.shape == truth.shape == (80, 96)
    assert truth.any() and (counts[truth] - 3000.0).min() > 0


class NaNBackend(OracleBackend):
    def predict(self, x):
        return np.where(x > 2.0, np.nan, 0.0).astype(np.float32)


def test_nan_probabilities_are_an_error_not_missed_targets():
    """NaN at the targets read as misses: the envelope said the detector needs more SNR."""
    cfg = EnvelopeConfig(width=160, height=128, snrs=(30.0,), sizes=(POINT,), scenes=("flat",),
                         encodings=("32FC1",), frames=1)
    with pytest.raises(BackendError, match="flat 32FC1 frame 0: .* NaN or infinite"):
        run_envelope(NaNBackend(), InputNorm(kind="robust", background=32), 0.5, cfg)
