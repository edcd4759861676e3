"""Softmax / AM-softmax / AAM-softmax against formulas written here, and the margin warm-up."""

import math

import numpy as np
import pytest
import torch

from subtools.pytorch.libs.nnet.loss import MarginSoftmaxLoss, SoftmaxLoss, build_loss

torch.set_num_threads(1)


def numpy_ce(logits, targets):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(targets)), targets].mean()


def test_softmax_loss():
    torch.manual_seed(0)
    loss_fn = SoftmaxLoss(8, 5).double()
    x = torch.randn(6, 8, 1, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    loss, logits = loss_fn(x, t)
    ref = x[:, :, 0].numpy() @ loss_fn.affine.weight.detach().numpy().T + loss_fn.affine.bias.detach().numpy()
    assert np.allclose(logits.numpy(), ref, atol=1e-12)
    assert abs(loss.item() - numpy_ce(ref, t.numpy())) < 1e-10


def test_asv_subtools_initialisation():
    """ASV-subtools: the softmax layer (a TdnnAffine) N(0, 0.01^2) with zero bias; margin weights N(0, 0.01^2)."""
    torch.manual_seed(3)
    softmax = SoftmaxLoss(512, 600)
    assert torch.all(softmax.affine.bias == 0)
    assert abs(softmax.affine.weight.std().item() - 0.01) < 2e-4 and abs(softmax.affine.weight.mean().item()) < 1e-4
    margin = MarginSoftmaxLoss(512, 600)
    assert abs(margin.weight.std().item() - 0.01) < 2e-4 and abs(margin.weight.mean().item()) < 1e-4


@pytest.mark.parametrize("method", ["am", "aam"])
def test_margin_losses_against_formulas(method):
    torch.manual_seed(1)
    m, s = 0.2, 30.0
    loss_fn = MarginSoftmaxLoss(8, 5, method=method, m=m, s=s).double()
    x = torch.randn(7, 8, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    # force one sample past pi - m on its target to exercise the ArcFace fallback
    loss_fn.weight.data[4] = -x[4] * 3 + 1e-3 * torch.randn(8, dtype=torch.float64)
    loss, logits = loss_fn(x, t)
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    w = loss_fn.weight.detach().numpy()
    cos = xn @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    assert np.allclose(logits.numpy(), s * cos, atol=1e-10)  # accuracy logits: un-margined
    margined = cos.copy()
    for i, y in enumerate(t.numpy()):
        theta = math.acos(np.clip(cos[i, y], -1, 1))
        if method == "am":
            margined[i, y] = cos[i, y] - m
        elif theta + m <= math.pi:
            margined[i, y] = math.cos(theta + m)
        else:
            margined[i, y] = cos[i, y] - m * math.sin(m)
    assert abs(loss.item() - numpy_ce(s * margined, t.numpy())) < 1e-8
    if method == "aam":
        assert math.acos(cos[4, 4]) + m > math.pi  # sample 4 (target 4) took the fallback branch


def test_margin_warmup_schedule():
    loss_fn = build_loss("aam_softmax", 4, 3, m=0.2, s=30, warmup_epochs=2.0)
    assert loss_fn.m == pytest.approx(0.2)  # full margin before any step()
    for progress, expect in [(0.0, 0.0), (0.5, 0.05), (1.0, 0.1), (1.999, 0.1999), (2.0, 0.2), (7.5, 0.2)]:
        loss_fn.step(progress)
        assert loss_fn.m == pytest.approx(expect)
    no_warmup = build_loss("am_softmax", 4, 3)
    no_warmup.step(0.0)
    assert no_warmup.m == pytest.approx(0.2) and no_warmup.s == 30


def test_margin_zero_equals_scaled_cosine_softmax():
    torch.manual_seed(2)
    loss_fn = build_loss("am_softmax", 6, 4, m=0.2, s=10, warmup_epochs=1.0)
    loss_fn.step(0.0)
    x, t = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    loss, logits = loss_fn(x, t)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, t), atol=1e-6)


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("arcface", 4, 3)
