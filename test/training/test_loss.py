import math

import pytest
import torch

from irstd_ros.training.loss import (
    SMOOTH,
    consistency_loss,
    consistency_region,
    dihedral,
    distillation_loss,
    random_symmetry,
    soft_iou_loss,
    undo_dihedral,
)

BIG = 30.0  # logit whose sigmoid is 1 to float precision


def test_perfect_prediction_has_zero_loss():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:4, 2:4] = 1
    logits = torch.where(target > 0, BIG, -BIG)
    assert soft_iou_loss(logits, target).item() < 1e-6


def test_disjoint_prediction_matches_formula():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 0, 0:4] = 1  # 4 target pixels
    logits = torch.full_like(target, -BIG)
    logits[..., 7, 0:2] = BIG  # 2 predicted pixels elsewhere
    expected = 1 - (0 + SMOOTH) / (2 + 4 - 0 + SMOOTH)
    assert math.isclose(soft_iou_loss(logits, target).item(), expected, rel_tol=1e-5)


def test_half_overlap_matches_formula():
    target = torch.zeros(1, 1, 4, 4)
    target[..., 0, :] = 1  # 4 pixels
    logits = torch.full_like(target, -BIG)
    logits[..., 0, :2] = BIG  # 2 of them predicted
    expected = 1 - (2 + SMOOTH) / (2 + 4 - 2 + SMOOTH)
    assert math.isclose(soft_iou_loss(logits, target).item(), expected, rel_tol=1e-5)


def test_loss_is_mean_over_images_and_differentiable():
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, 0, 0] = 1
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    loss = soft_iou_loss(logits, target)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # p = 0.5 on 16 px: image 0 (one target px) and image 1 (none) by eq. (4)
    one = 1 - (0.5 + SMOOTH) / (8 + 1 - 0.5 + SMOOTH)
    two = 1 - SMOOTH / (8 + SMOOTH)
    assert math.isclose(loss.item(), (one + two) / 2, rel_tol=1e-5)


def test_distillation_is_smallest_at_the_teachers_logits():
    teacher = torch.tensor([[-3.0, 0.0, 2.0]])
    at_teacher = distillation_loss(teacher, teacher).item()
    for other in (teacher + 1.0, teacher - 1.0, torch.zeros_like(teacher)):
        assert distillation_loss(other, teacher).item() > at_teacher


def test_distillation_counts_only_the_samples_that_have_a_teacher():
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(3, 1, 4, 4, generator=gen), torch.randn(3, 1, 4, 4, generator=gen)
    taught = torch.tensor([1.0, 0.0, 1.0])
    subset = distillation_loss(student[[0, 2]], teacher[[0, 2]])  # the mean over the taught two
    # each taught sample weighs 1/N of the batch, as in the label loss's mean
    assert distillation_loss(student, teacher, taught).item() == pytest.approx(subset.item() * 2 / 3, rel=1e-6)
    assert distillation_loss(student, teacher, torch.zeros(3)).item() == 0.0


def test_distillation_with_labels_never_pulls_a_labelled_target_down():
    # the teacher misses the target at pixel 1 (p = 0.05); with the labels its target there
    # is 1, so raising the student's logit on it lowers the loss; off-target pixels keep
    # the teacher's soft value
    teacher = torch.tensor([[[[-3.0, -3.0, 2.0]]]])
    labels = torch.tensor([[[[0.0, 1.0, 0.0]]]])
    low, high = teacher.clone(), teacher.clone()
    high[..., 1] = 4.0
    assert distillation_loss(high, teacher).item() > distillation_loss(low, teacher).item()
    assert distillation_loss(high, teacher, labels=labels).item() < distillation_loss(low, teacher, labels=labels).item()
    # the background pixels' terms are the plain distillation's
    off = torch.tensor([[[[-1.0, 4.0, 0.5]]]])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(off, torch.sigmoid(teacher), reduction="none")
    kept = torch.nn.functional.binary_cross_entropy_with_logits(off, torch.maximum(torch.sigmoid(teacher), labels), reduction="none")
    assert torch.equal(plain[..., [0, 2]], kept[..., [0, 2]])
    assert distillation_loss(off, teacher, labels=labels).item() == pytest.approx(kept.mean().item(), rel=1e-6)


@pytest.mark.parametrize("turns", range(4))
@pytest.mark.parametrize("mirror", [False, True])
def test_undo_dihedral_inverts_each_of_the_square_s_symmetries(turns, mirror):
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    turned = dihedral(x, turns, mirror)
    assert torch.equal(undo_dihedral(turned, turns, mirror), x)
    if (turns, mirror) != (0, False):
        assert not torch.equal(turned, x)


def test_random_symmetry_draws_the_seven_others_never_the_identity():
    g = torch.Generator().manual_seed(0)
    drawn = {random_symmetry(g) for _ in range(400)}
    assert (0, False) not in drawn and len(drawn) == 7


def test_consistency_is_lowest_where_the_views_agree_and_pulls_both_ways():
    a = torch.tensor([[[[BIG, -BIG], [-BIG, -BIG]]]])
    b = a.clone()
    c = torch.tensor([[[[-BIG, -BIG], [-BIG, BIG]]]])
    assert consistency_loss(a, b).item() < 1e-6 < consistency_loss(a, c).item()
    x, y = torch.zeros(1, 1, 2, 2, requires_grad=True), torch.full((1, 1, 2, 2), 2.0, requires_grad=True)
    consistency_loss(x, y).backward()
    assert (x.grad < 0).all() and (y.grad > 0).all()  # each towards the other


def test_consistency_region_is_near_targets_and_where_a_view_fires():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4, 4] = 1
    quiet = torch.full((1, 1, 16, 16), -BIG)
    fires = quiet.clone()
    fires[..., 12, 12] = BIG
    region = consistency_region(mask, quiet, fires, radius=2)
    assert region[..., 2:7, 2:7].all() and region[..., 12, 12].item()
    assert int(region.sum()) == 25 + 1


def test_restricted_consistency_is_not_diluted_by_agreeing_background():
    a = torch.full((1, 1, 32, 32), -BIG)
    b = a.clone()
    a[..., 5, 5], b[..., 5, 5] = BIG, -BIG  # one pixel where the views disagree
    everywhere = consistency_loss(a, b)
    region = torch.zeros_like(a, dtype=torch.bool)
    region[..., 4:7, 4:7] = True
    restricted = consistency_loss(a, b, region)
    assert restricted.item() == pytest.approx(everywhere.item() * 32 * 32 / 9, rel=1e-4)
    assert consistency_loss(a, b, torch.zeros_like(region)).item() == 0.0
