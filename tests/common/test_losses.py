import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.losses import FocalLoss, build_classification_loss, class_weights, loss_on_probabilities


def test_class_weights_follow_n_over_c_times_nc():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(labels, 2)
    # w_c = N / (C * n_c): 100 / (2 * 90) and 100 / (2 * 10)
    assert w.tolist() == pytest.approx([100 / 180, 100 / 20])
    # each class then carries the same total weight
    assert 90 * w[0].item() == pytest.approx(10 * w[1].item())


def test_class_weights_refuse_a_missing_class():
    with pytest.raises(ValueError, match="no training examples"):
        class_weights(np.zeros(5, int), 2)


def test_weighted_ce_matches_torch():
    torch.manual_seed(0)
    logits, target = torch.randn(20, 2), torch.randint(0, 2, (20,))
    target[0], target[1] = 0, 1
    loss = build_classification_loss("weighted_ce", target.numpy())
    expected = F.cross_entropy(logits, target, weight=class_weights(target, 2))
    assert loss(logits, target).item() == pytest.approx(expected.item())


def test_focal_with_gamma_zero_is_cross_entropy_and_gamma_discounts_easy_examples():
    logits = torch.tensor([[4.0, -4.0], [0.1, 0.0]])
    target = torch.tensor([0, 0])
    assert FocalLoss(gamma=0)(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5)
    per_example = [FocalLoss(gamma=2)(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    ce = [F.cross_entropy(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    assert per_example[0] / ce[0] < per_example[1] / ce[1]


def test_loss_on_probabilities_equals_the_loss_on_the_matching_logits():
    torch.manual_seed(1)
    logits = torch.randn(30, 2)
    labels = torch.randint(0, 2, (30,))
    labels[:2] = torch.tensor([0, 1])
    criterion = build_classification_loss("weighted_ce", labels.numpy())
    probs = torch.softmax(logits, 1)[:, 1].numpy()
    assert loss_on_probabilities(criterion, probs, labels.numpy()) == pytest.approx(
        criterion(logits, labels).item(), rel=1e-5)
