"""The paper configs build the authors' networks: a float64 reference written from the equations of the
authors' code (github.com/clockw/Serialized-Attention-for-Speaker-Verification: model/serialized-tdnn-
xvector.py, model/snowdar-xvector.py as run by their run-xvector.py, libs/nnet/{components,pooling,
loss}.py) equals our models' embeddings and losses; parameter counts; initialisation.

The reference hard-codes the authors' constants (TDNN contexts with zero padding, ReLU then BatchNorm
eps 1e-5 without affine, LayerNorm eps 1e-6, std floor 1e-10, one attention head of dim 128 scaled by
1/sqrt(128), the layer's attentive mean added to the frames, pre-norm feed-forward, e = sum of the layer
outputs, ReLU + BatchNorm after e) and reads only the weights from our modules, so a config or module
that departs from the authors' network (padding off, other eps, other order) fails it.
"""

import pytest
import torch
import torch.nn.functional as F

from subtools.pytorch.launcher.config import load_config
from subtools.pytorch.libs.nnet.framework import load_blueprint

torch.set_num_threads(1)
TDNN_CONTEXTS = ([-2, -1, 0, 1, 2], [-2, 0, 2], [-3, 0, 3], [0], [0])
BN_EPS, LN_EPS, STD_FLOOR = 1.0e-5, 1.0e-6, 1.0e-10


def build(config_path, inputs_dim, num_targets):
    model = load_config(config_path)["model"]
    return load_blueprint(model["blueprint"], model["class"])(inputs_dim, num_targets, **model["params"])


# ------------------------------------------------------------------ reference, from the authors' equations

def ref_tdnn_affine(x, affine, context):
    """ASV-subtools TdnnAffine with pad=True: y_t = b + sum_c W_c x_{t+c}, x zero outside [0, T)."""
    t_len = x.shape[2]
    y = affine.bias[None, :, None].expand(x.shape[0], -1, t_len)
    for k, c in enumerate(context):
        shifted = torch.zeros_like(x)
        lo, hi = max(0, -c), min(t_len, t_len - c)
        shifted[:, :, lo:hi] = x[:, :, lo + c:hi + c]
        y = y + torch.einsum("oi,bit->bot", affine.weight[:, :, k], shifted)
    return y


def ref_batchnorm(x, bn, training):
    """BatchNorm1d without affine over (batch, frames): batch statistics (biased) in training, else running."""
    if training:
        mean, var = x.mean((0, 2)), x.var((0, 2), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    return (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + BN_EPS)


def ref_relu_bn_tdnn(x, layer, context, training):
    """ASV-subtools ReluBatchNormTdnnLayer: (affine output, BN(ReLU(affine)))."""
    affine = ref_tdnn_affine(x, layer.affine, context)
    return affine, ref_batchnorm(torch.relu(affine), layer.batchnorm, training)


def ref_layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + LN_EPS) * ln.weight + ln.bias


def ref_serialized_block(h, layer):
    """SingleHeadAttention_serialized + PositionwiseFeedForward on frames h [B, T, d] (dropout off):
    (refined frames, the block's skip output [B, d])."""
    v = ref_layer_norm(h, layer.norm)
    k = v @ layer.w_k.weight.T                                            # [B, T, 128]
    mean = v.mean(1)
    std = torch.sqrt(v.var(1, unbiased=False).clamp(min=STD_FLOOR))
    q = torch.cat([mean, std], 1) @ layer.w_q.weight.T                    # [B, 128]
    weights = torch.softmax(torch.einsum("btk,bk->bt", k, q) / k.shape[2] ** 0.5, dim=1)
    att_mean = torch.einsum("btd,bt->bd", v, weights)
    att_std = torch.sqrt(torch.einsum("btd,bt->bd", (v - att_mean[:, None]) ** 2, weights).clamp(min=STD_FLOOR))
    skip = torch.cat([att_mean, att_std], 1) @ layer.w_o.weight.T + layer.w_o.bias
    if not hasattr(layer, "w_p"):       # the last block: the authors refine and discard, we do not build it
        return None, skip
    h = h + (att_mean @ layer.w_p.weight.T)[:, None]
    ff1, ff2 = layer.ff[0], layer.ff[2]
    h = h + torch.relu(ref_layer_norm(h, layer.ff_norm) @ ff1.weight.T + ff1.bias) @ ff2.weight.T + ff2.bias
    return h, skip


def ref_softmax_loss(hidden, loss, targets):
    logits = hidden @ loss.affine.weight.T + loss.affine.bias
    return F.cross_entropy(logits, targets), logits


def ref_serialized_model(model, x, targets, training):
    """The authors' Xvector of serialized-tdnn-xvector.py: tdnn1-3, tdnn4 (1x1 conv, no bias), the
    serialized module's transform (e = sum of skips), ReLU + BN, tdnn7, softmax. -> (far, loss, logits)."""
    for layer, context in zip(model.frames, TDNN_CONTEXTS):
        x = ref_relu_bn_tdnn(x, layer, context, training)[1]
    h = torch.einsum("oi,bit->bto", model.pooling.input_proj.weight, x)
    far = 0
    for layer in model.pooling.layers:
        h, skip = ref_serialized_block(h, layer)
        far = far + skip
    hidden = ref_batchnorm(torch.relu(far)[:, :, None], model.pooled_norm, training)
    hidden = ref_relu_bn_tdnn(hidden, model.segment, [0], training)[1][:, :, 0]
    return (far, *ref_softmax_loss(hidden, model.loss, targets))


def ref_xvector_model(model, x, targets, training):
    """The authors' baseline (snowdar-xvector.py, tdnn6 on): tdnn1-5, statistics or attentive statistics
    pooling (affine_layers 1: alpha = softmax_t(w.x_t + b); var = sum alpha x^2 - mean^2), tdnn6 ("far" =
    its affine output), tdnn7, softmax. -> (far, loss, logits)."""
    for layer, context in zip(model.frames, TDNN_CONTEXTS):
        x = ref_relu_bn_tdnn(x, layer, context, training)[1]
    if hasattr(model.pooling, "affines"):
        (score,) = model.pooling.affines
        alpha = torch.softmax(ref_tdnn_affine(x, score, [0]), dim=2)           # [B, 1, T]
        mean = (alpha * x).sum(2)
        std = torch.sqrt(((alpha * x ** 2).sum(2) - mean ** 2).clamp(min=STD_FLOOR))
    else:
        mean = x.mean(2)
        std = torch.sqrt(((x - mean[:, :, None]) ** 2).mean(2).clamp(min=STD_FLOOR))
    far, hidden = ref_relu_bn_tdnn(torch.cat([mean, std], 1)[:, :, None], model.segment1, [0], training)
    hidden = ref_relu_bn_tdnn(hidden, model.segment2, [0], training)[1][:, :, 0]
    return (far[:, :, 0], *ref_softmax_loss(hidden, model.loss, targets))


# ------------------------------------------------------------------ the tests

PAPER = [("conf/serialized-tdnn-xvector.yaml", ref_serialized_model),
         ("conf/xvector-stats.yaml", ref_xvector_model),
         ("conf/xvector-attentive.yaml", ref_xvector_model)]
DEMO = [("conf/mini-serialized.yaml", ref_serialized_model),
        ("conf/mini-xvector-stats.yaml", ref_xvector_model),
        ("conf/mini-xvector-attentive.yaml", ref_xvector_model)]


@pytest.mark.parametrize("config,reference", PAPER + DEMO)
def test_model_equals_authors_equations(config, reference):
    """Embedding ("far") and softmax loss to 1e-9 in float64: eval mode (BatchNorm running statistics set
    at random), and training mode with dropout off (batch statistics); an utterance of 9 frames, shorter
    than the unpadded network's 15, is embedded as in a batch of its own."""
    torch.manual_seed(0)
    num_targets = 5994 if config in dict(PAPER) else 50
    model = build(config, 80, num_targets).double()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == (5 if "serialized" in config else 7)       # ASV-subtools bn_params of the recipes
    assert all(m.momentum == 0.5 and not m.affine and m.eps == BN_EPS and m.track_running_stats for m in norms)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    # Attentive weights from N(0, 0.01) are near uniform: spread them so the reference's alpha matters.
    for affine in getattr(model.pooling, "affines", []):
        torch.nn.init.normal_(affine.weight, 0.0, 0.2)
    x = torch.randn(3, 80, 40, dtype=torch.float64)
    targets = torch.tensor([5, 0, num_targets - 1])
    for training in (False, True):
        model.train(training)
        with torch.no_grad():
            loss, logits = model.get_loss(model(x), targets)
            far = model.extract_embedding(x, "far")
            ref_far, ref_loss, ref_logits = reference(model, x, targets, training)
        assert torch.allclose(far, ref_far, rtol=0, atol=1e-9), (training, (far - ref_far).abs().max())
        assert torch.allclose(logits, ref_logits, rtol=0, atol=1e-9), (training, (logits - ref_logits).abs().max())
        assert abs(loss.item() - ref_loss.item()) <= 1e-9, (training, loss.item(), ref_loss.item())
    model.eval()
    short = torch.randn(1, 80, 9, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(model.extract_embedding(short), reference(model, short, targets[:1], False)[0],
                              rtol=0, atol=1e-9)


# Parameters without the never-read ones: ASV-subtools stores the context gaps of tdnn2/tdnn3 (2 and 4
# taps x 512 x 512, always multiplied by 0) and the authors build a refinement for the 6th serialized
# layer whose output is discarded (65,536 + 263,424); their allocation is larger by those 1,901,824.
COUNTS = {  # config: {inputs_dim: (total, without the softmax layer)} for 5,994 speakers
    "conf/serialized-tdnn-xvector.yaml": {80: (8_142_442, 5_067_520), 26: (8_004_202, 4_929_280)},
    "conf/xvector-stats.yaml": {80: (7_685_446, 4_610_524), 26: (7_547_206, 4_472_284)},
    "conf/xvector-attentive.yaml": {80: (7_686_947, 4_612_025), 26: (7_548_707, 4_473_785)},
}


@pytest.mark.parametrize("config", sorted(COUNTS))
@pytest.mark.parametrize("inputs_dim", [80, 26])
def test_parameter_counts(config, inputs_dim):
    """80-dim fbank and the authors' 26-dim MFCC 23 + pitch 3; the softmax layer is 512 x 5,994 + 5,994."""
    info = build(config, inputs_dim, 5994).get_model_info()
    assert (info["num_params"], info["num_params_without_loss"]) == COUNTS[config][inputs_dim]
    assert info["num_params"] - info["num_params_without_loss"] == 512 * 5994 + 5994
    assert info["min_frames"] == 1


def test_paper_model_initialisation():
    """As ASV-subtools: TDNN/segment affines Kaiming-uniform (ReLU, fan_out = out x dense kernel width)
    with zero bias; softmax layer N(0, 0.01^2) with zero bias; the serialized module's layers PyTorch's
    defaults (U(+-1/sqrt(fan_in)) weights and biases, LayerNorm 1 and 0), as the authors' nn.Linear/Conv1d."""
    torch.manual_seed(3)
    model = build("conf/serialized-tdnn-xvector.yaml", 80, 5994)
    layers = [(layer, width) for layer, width in zip(model.frames, (5, 5, 7))] + [(model.segment, 1)]
    for layer, width in layers:
        w, bound = layer.affine.weight, (6 / (layer.output_dim * width)) ** 0.5
        assert torch.all(layer.affine.bias == 0)
        assert bound * 0.999 < w.abs().max() <= bound
        assert abs(w.var().item() / (bound ** 2 / 3) - 1) < 0.05
    softmax = model.loss.affine
    assert torch.all(softmax.bias == 0) and abs(softmax.weight.std().item() - 0.01) < 1e-4
    for name, module in model.pooling.named_modules():
        if isinstance(module, torch.nn.Linear):
            bound = module.in_features ** -0.5
            for p in [module.weight] + ([module.bias] if module.bias is not None else []):
                assert bound * 0.95 < p.abs().max() <= bound, name
        elif isinstance(module, torch.nn.LayerNorm):
            assert module.eps == LN_EPS
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
