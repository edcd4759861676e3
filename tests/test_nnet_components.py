"""TdnnAffine / ReluBatchNormTdnnLayer / TdnnStack against a manual frame splice."""

import pytest
import torch

from subtools.pytorch.libs.nnet.components import ReluBatchNormTdnnLayer, TdnnAffine, TdnnStack

torch.set_num_threads(1)


def splice_affine(layer, x):
    """Reference: y_t = b + sum_k W_k x_{t + c_k - c_1}, by explicit frame splicing. x [B, D, T]."""
    ctx = layer.context
    t_out = x.shape[2] - (ctx[-1] - ctx[0])
    rows = []
    for t in range(0, t_out, layer.stride):
        spliced = torch.cat([x[:, :, t + c - ctx[0]] for c in ctx], dim=1)  # [B, K*D]
        weight = torch.cat([layer.weight[:, :, k] for k in range(len(ctx))], dim=1)  # [out, K*D]
        y = spliced @ weight.T
        rows.append(y if layer.bias is None else y + layer.bias)
    return torch.stack(rows, dim=2)


@pytest.mark.parametrize("context,stride", [([-2, 0, 2], 1), ([-2, -1, 0, 1, 2], 1), ([-3, 0, 1], 1),
                                            ([0], 1), ([-1, 0, 1], 2), ([-4, 0, 3], 3)])
def test_tdnn_affine_equals_splice(context, stride):
    torch.manual_seed(0)
    layer = TdnnAffine(6, 5, context=context, stride=stride).double()
    x = torch.randn(2, 6, 17, dtype=torch.float64)
    y = layer(x)
    assert y.shape[2] == (17 - (context[-1] - context[0]) - 1) // stride + 1
    assert torch.allclose(y, splice_affine(layer, x), atol=1e-12)


def test_tdnn_affine_parameters_only_for_taps_and_gradient():
    layer = TdnnAffine(4, 3, context=[-3, 0, 1])
    assert layer.weight.shape == (3, 4, 3)
    x = torch.randn(2, 4, 9, requires_grad=True)
    layer(x).sum().backward()
    # frames 7, 8 of the input only reach the output through tap +1 (t + 1 <= 8): gradient nonzero
    assert x.grad.abs().sum() > 0 and layer.weight.grad.shape == layer.weight.shape


def test_tdnn_affine_rejects_bad_input():
    with pytest.raises(ValueError):
        TdnnAffine(4, 3, context=[0, -1])
    layer = TdnnAffine(4, 3, context=[-3, 0, 3])
    with pytest.raises(ValueError, match="shorter"):
        layer(torch.randn(1, 4, 6))
    with pytest.raises(ValueError, match="expected"):
        layer(torch.randn(1, 5, 10))


def test_relu_batchnorm_layer_order_and_affine_output():
    torch.manual_seed(1)
    layer = ReluBatchNormTdnnLayer(4, 3, context=[-1, 0, 1], bn_momentum=0.5, bn_affine=False).eval()
    layer.batchnorm.running_mean.uniform_(0, 1)
    layer.batchnorm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 8)
    out, affine = layer(x, return_affine=True)
    bn = layer.batchnorm
    expect = (torch.relu(affine) - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps)
    assert torch.allclose(affine, layer.affine(x))
    assert torch.allclose(out, expect, atol=1e-6)


def test_tdnn_stack_xvector_frames():
    stack = TdnnStack(30, channels=[16, 16, 16, 16, 24])
    assert stack.frames_lost == 4 + 4 + 6
    assert stack(torch.randn(2, 30, 40)).shape == (2, 24, 40 - 14)
