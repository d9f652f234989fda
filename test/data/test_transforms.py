import numpy as np
import pytest
from scipy import ndimage

from irstd_ros.data.transforms import pad_to, rescale


def _scene(side=128):
    img = np.zeros((side, side), np.float32)
    mask = np.zeros((side, side), bool)
    img[40, 41] = 100.0  # a one-pixel target on an odd column
    mask[40, 41] = True
    img[80:100, 60:80] = 10.0  # an extended one
    mask[80:100, 60:80] = True
    return img, mask


def test_shrinking_keeps_signal_and_every_target():
    img, mask = _scene()
    out, m = rescale(img, mask, 64)
    assert out.shape == m.shape == (64, 64)
    assert out.sum() * 4 == pytest.approx(img.sum(), rel=1e-5)  # area resampling keeps the sum
    assert m[20, 20]  # the point target survives as one pixel of the mask
    assert m[40:50, 30:40].all() and m.sum() == 1 + 100
    assert not m[:10].any()


def test_enlarging_grows_targets_and_masks_together():
    img, mask = _scene()
    out, m = rescale(img[64:, 32:96], mask[64:, 32:96], 128)
    assert m.sum() == pytest.approx(4 * 400, rel=0.05)
    assert out[m].min() > out[~m].max()  # the mask follows the enlarged target's edge
    assert out[m].mean() > 9.0


def test_same_size_is_a_no_op_and_bad_shapes_are_errors():
    img, mask = _scene()
    out, m = rescale(img, mask, 128)
    assert out is img and m is mask
    with pytest.raises(ValueError, match="square"):
        rescale(img[:, :100], mask[:, :100], 64)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40), (40, 40), (3, 300)])
def test_padding_a_small_frame_mirrors_an_edge_target_never_smears_it(shape):
    """A frame under half the crop (SIRST-v2 has 135x96) padded to 256: a target on its
    bottom/right edge comes back as mirrored copies, not a stripe repeated to the border."""
    h, w = shape
    img = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    mask[h - 2 :, w - 3 :] = True
    img[mask] = 5.0
    pimg, pmask = pad_to(img, mask, 256)
    assert pimg.shape[0] >= 256 and pimg.shape[1] >= 256
    assert np.array_equal(pimg[:h, :w], img) and np.array_equal(pmask[:h, :w], mask)
    assert np.array_equal(pimg > 0, pmask)  # image and mask stay aligned
    labels, n = ndimage.label(pmask)
    assert n > 1 and np.bincount(labels.ravel())[1:].max() <= 4 * mask.sum()
