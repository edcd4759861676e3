"""TdnnAffine / ReluBatchNormTdnnLayer / TdnnStack against a manual frame splice."""

import pytest
import torch

from subtools.pytorch.libs.nnet.components import ReluBatchNormTdnnLayer, TdnnAffine, TdnnStack

torch.set_num_threads(1)


def splice_affine(layer, x):
    """Reference: y_t = b + sum_k W_k x_{t + c_k}, by explicit frame splicing. x [B, D, T].
    Unpadded: t from -c_1 while every tap exists; padded: t = 0 .. T-1, x = 0 outside its frames."""
    ctx = layer.context
    frame = (lambda t: x[:, :, t] if 0 <= t < x.shape[2] else torch.zeros_like(x[:, :, 0]))
    first, last = (0, x.shape[2] - 1) if layer.pad else (-ctx[0], x.shape[2] - 1 - ctx[-1])
    rows = []
    for t in range(first, last + 1, layer.stride):
        spliced = torch.cat([frame(t + c) for c in ctx], dim=1)  # [B, K*D]
        weight = torch.cat([layer.weight[:, :, k] for k in range(len(ctx))], dim=1)  # [out, K*D]
        y = spliced @ weight.T
        rows.append(y if layer.bias is None else y + layer.bias)
    return torch.stack(rows, dim=2)


@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("context,stride", [([-2, 0, 2], 1), ([-2, -1, 0, 1, 2], 1), ([-3, 0, 1], 1),
                                            ([0], 1), ([-1, 0, 1], 2), ([-4, 0, 3], 3), ([1, 3], 1),
                                            ([-3, -2], 2)])
def test_tdnn_affine_equals_splice(context, stride, pad):
    torch.manual_seed(0)
    layer = TdnnAffine(6, 5, context=context, stride=stride, pad=pad).double()
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 6, 17, dtype=torch.float64)
    y = layer(x)
    assert y.shape[2] == (16 if pad else 17 - (context[-1] - context[0]) - 1) // stride + 1
    assert torch.allclose(y, splice_affine(layer, x), atol=1e-12)


def test_padded_tdnn_takes_any_length():
    """ASV-subtools' padding: T frames in, T out, down to T = 1 (the taps then read zeros only)."""
    layer = TdnnAffine(4, 3, context=[-3, 0, 3], pad=True).double()
    x = torch.randn(1, 4, 1, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (1, 3, 1)
    assert torch.allclose(y[0, :, 0], layer.weight[:, :, 1] @ x[0, :, 0] + layer.bias, atol=1e-12)


def test_tdnn_affine_parameters_only_for_taps_and_gradient():
    layer = TdnnAffine(4, 3, context=[-3, 0, 1])
    assert layer.weight.shape == (3, 4, 3)
    x = torch.randn(2, 4, 9, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad.shape == layer.weight.shape
    # d sum(y) / d x_j = sum over the taps k that read frame j of sum_o W[o, :, k]. 5 output frames
    # (centres 3..7); tap -3 reads frames 0-4, tap 0 frames 3-7, tap +1 frames 4-8. So frames 0-2
    # reach the output only through tap -3 and frame 8 only through tap +1.
    taps = layer.weight.detach().sum(0)                                 # [4, 3]
    readers = {0: [0], 1: [0], 2: [0], 3: [0, 1], 4: [0, 1, 2], 5: [1, 2], 6: [1, 2], 7: [1, 2], 8: [2]}
    for frame, ks in readers.items():
        assert torch.allclose(x.grad[:, :, frame], taps[:, ks].sum(1).expand(2, 4), atol=1e-6), frame


def test_tdnn_affine_rejects_bad_input():
    with pytest.raises(ValueError):
        TdnnAffine(4, 3, context=[0, -1])
    layer = TdnnAffine(4, 3, context=[-3, 0, 3])
    with pytest.raises(ValueError, match="shorter"):
        layer(torch.randn(1, 4, 6))
    assert layer(torch.randn(1, 4, 7)).shape[2] == 1
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
    # Kaldi's x-vector contexts (frame1-frame5), and the stack = the layers chained by the splice reference
    assert [layer.affine.context for layer in stack] == [[-2, -1, 0, 1, 2], [-2, 0, 2], [-3, 0, 3], [0], [0]]
    torch.manual_seed(3)
    stack = stack.double().eval()
    for layer in stack:
        layer.batchnorm.running_mean.uniform_(0, 1)
        layer.batchnorm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 30, 40, dtype=torch.float64)
    ref = x
    with torch.no_grad():
        for layer in stack:
            ref = layer.batchnorm(torch.relu(splice_affine(layer.affine, ref)))
        assert torch.allclose(stack(x), ref, atol=1e-10)
    padded = TdnnStack(30, channels=[16, 16, 16, 16, 24], pad=True)
    assert padded.frames_lost == 0
    assert padded(torch.randn(2, 30, 40)).shape == (2, 24, 40)


def test_asv_subtools_initialisation():
    """A bare TdnnAffine: N(0, 0.01^2), zero bias; in a ReluBatchNormTdnnLayer: Kaiming-uniform for ReLU,
    fan_out = out x ASV-subtools' dense kernel width (5 for [-2, 0, 2], 4 for [1, 3]: offsets 0..3),
    bound sqrt(6 / fan_out); bias 0. Moments checked on 400 x 300 x K draws (relative error ~0.3 %)."""
    torch.manual_seed(7)
    bare = TdnnAffine(300, 400, context=[-2, 0, 2])
    assert torch.all(bare.bias == 0)
    assert abs(bare.weight.std().item() - 0.01) < 2e-4 and abs(bare.weight.mean().item()) < 1e-4
    for context, width in [([-2, -1, 0, 1, 2], 5), ([-2, 0, 2], 5), ([-3, 0, 3], 7), ([0], 1), ([1, 3], 4)]:
        layer = ReluBatchNormTdnnLayer(300, 400, context=context)
        assert layer.affine.kernel_span == width
        bound = (6 / (400 * width)) ** 0.5
        w = layer.affine.weight
        assert torch.all(layer.affine.bias == 0)
        assert w.abs().max() <= bound and w.abs().max() > 0.999 * bound
        assert abs(w.var().item() / (bound ** 2 / 3) - 1) < 0.02, context
