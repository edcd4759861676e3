"""Poolings: shapes, numpy statistics, attention weights, padding invariance, and the serialized
module against a slow per-utterance reference written from its equations (SPEC §6.1 + the
authors' variant), using the module's own parameters in float64."""

import math

import numpy as np
import pytest
import torch

from subtools.pytorch.libs.nnet.pooling import (AUTHORS_CONFIG, AttentiveStatisticsPooling,
                                                MultiHeadAttentionPooling,
                                                SerializedMultiHeadAttentionPooling,
                                                StatisticsPooling, build_pooling)

torch.set_num_threads(1)
D = 16
SMALL_SERIALIZED = dict(d_model=16, num_layers=2, num_heads=4, d_ff=24)
POOLINGS = [("stats", {}), ("attentive", {"hidden_size": 8}), ("multihead", {"num_heads": 4}),
            ("serialized", SMALL_SERIALIZED),
            ("serialized", dict(AUTHORS_CONFIG, d_model=16, d_ff=32, att_dim=8, out_dim=16, num_layers=3))]


@pytest.mark.parametrize("name,params", POOLINGS)
@pytest.mark.parametrize("frames", [1, 7, 13])
def test_shapes(name, params, frames):
    torch.manual_seed(0)
    pool = build_pooling(name, D, **params).eval()
    x = torch.randn(3, D, frames)
    with torch.no_grad():
        out = pool(x)
        alone = [pool(x[b:b + 1])[0] for b in range(3)]
    assert out.shape == (3, pool.get_output_dim(), 1)
    assert torch.isfinite(out).all()
    assert all(torch.allclose(alone[b], out[b], atol=1e-5) for b in range(3))  # utterances do not mix
    if frames == 1 and name != "serialized":  # one frame: attention weights 1, mean = the frame itself
        assert torch.allclose(out[:, :D, 0], x[:, :, 0], atol=1e-6)
    if frames == 1 and name == "serialized":
        pool = pool.double()
        with torch.no_grad():
            out = pool(x.double())
        for b in range(3):
            assert torch.allclose(out[b, :, 0], ref_serialized(pool, x[b].double(), 1)[0], atol=1e-9)


def test_output_dims():
    assert build_pooling("stats", D).get_output_dim() == 2 * D
    assert build_pooling("serialized", D, **SMALL_SERIALIZED).get_output_dim() == 32
    assert build_pooling("serialized", D, combine="concat", **SMALL_SERIALIZED).get_output_dim() == 64
    with pytest.raises(ValueError, match="unknown pooling"):
        build_pooling("lde", D)


@pytest.mark.parametrize("unbiased", [False, True])
def test_statistics_pooling_equals_numpy(unbiased):
    x = torch.randn(4, D, 11, dtype=torch.float64)
    out = StatisticsPooling(D, unbiased=unbiased)(x)[:, :, 0].numpy()
    xn = x.numpy()
    assert np.allclose(out[:, :D], xn.mean(2), atol=1e-12)
    assert np.allclose(out[:, D:], xn.std(2, ddof=1 if unbiased else 0), atol=1e-12)
    lengths = torch.tensor([11, 5, 2, 1])
    masked = StatisticsPooling(D, unbiased=unbiased)(x, lengths)[:, :, 0].numpy()
    for i, n in enumerate(lengths.tolist()):
        ddof = 1 if unbiased and n > 1 else 0
        assert np.allclose(masked[i, :D], xn[i, :, :n].mean(1), atol=1e-12)
        assert np.allclose(masked[i, D:], np.sqrt(np.maximum(xn[i, :, :n].var(1, ddof=ddof), 1e-10)), atol=1e-12)


def padded_splice_affine(affine, x):
    """Reference TDNN affine with zero padding: y_t = b + sum_k W_k x_{t + c_k}, x [D, T] -> [out, T]."""
    t_len = x.shape[1]
    out = affine.bias[:, None].repeat(1, t_len)
    for k, c in enumerate(affine.context):
        shifted = torch.zeros_like(x)
        lo, hi = max(0, -c), min(t_len, t_len - c)
        shifted[:, lo:hi] = x[:, lo + c:hi + c]
        out = out + affine.weight[:, :, k] @ shifted
    return out


@pytest.mark.parametrize("affine_layers,context", [(1, [0]), (2, [0]), (2, [-1, 0, 2])])
def test_attentive_pooling_formula_and_weights(affine_layers, context):
    """ASV-subtools' AttentionAlphaComponent: 1 affine (linear score) or 2 (hidden ReLU layer), each
    zero-padded over `context`; attentive mean and std; padded frames as an utterance's end."""
    torch.manual_seed(1)
    pool = AttentiveStatisticsPooling(D, affine_layers=affine_layers, hidden_size=8, context=context).double()
    for affine in pool.affines:  # N(0, 0.01) weights and zero biases give near-uniform weights: spread them
        torch.nn.init.normal_(affine.weight, 0.0, 0.5)
        torch.nn.init.normal_(affine.bias, 0.0, 0.5)
    x = torch.randn(3, D, 9, dtype=torch.float64)
    lengths = [9, 6, 2]
    out, alpha = pool(x, torch.tensor(lengths), return_weights=True)
    assert torch.allclose(alpha.sum(-1), torch.ones(3, dtype=torch.float64))
    for b, n in enumerate(lengths):
        h = x[b, :, :n]
        for index, affine in enumerate(pool.affines):
            h = padded_splice_affine(affine, h if index == 0 else torch.relu(h))
        a = torch.softmax(h[0], 0)
        assert b > 0 or a.max() > 2 / n  # far from uniform: the scores matter
        xt = x[b, :, :n].T  # [n, D]
        mu = (a[:, None] * xt).sum(0)
        sigma = torch.sqrt((a[:, None] * xt ** 2).sum(0) - mu ** 2)
        assert torch.allclose(out[b, :, 0], torch.cat([mu, sigma]), atol=1e-10)
        assert torch.allclose(alpha[b, :n], a, atol=1e-12) and torch.all(alpha[b, n:] == 0)
    no_std = AttentiveStatisticsPooling(D, affine_layers=affine_layers, context=context, stddev=False)
    assert no_std.get_output_dim() == D and no_std(x.float()).shape == (3, D, 1)
    with pytest.raises(ValueError, match="affine_layers"):
        AttentiveStatisticsPooling(D, affine_layers=3)


def test_multihead_pooling_formula_and_weights():
    torch.manual_seed(2)
    pool = MultiHeadAttentionPooling(D, num_heads=4).double()
    x = torch.randn(2, D, 10, dtype=torch.float64)
    out, alpha = pool(x, return_weights=True)
    assert alpha.shape == (2, 4, 10)
    assert torch.allclose(alpha.sum(-1), torch.ones(2, 4, dtype=torch.float64))
    dh = D // 4
    for b in range(2):
        mus, sigmas = [], []
        for h in range(4):
            xh = x[b, h * dh:(h + 1) * dh].T  # [T, dh]
            a = torch.softmax(xh @ pool.u[h] / math.sqrt(dh), 0)
            mu = (a[:, None] * xh).sum(0)
            mus.append(mu)
            sigmas.append(torch.sqrt((a[:, None] * xh ** 2).sum(0) - mu ** 2))
        assert torch.allclose(out[b, :, 0], torch.cat(mus + sigmas), atol=1e-10)


# ---------------------------------------------------------------- serialized: slow reference

def ref_layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def ref_encoder_layer(h, enc):
    """Post-norm Transformer encoder layer on one utterance's valid frames h [n, d]."""
    d = h.shape[1]
    nh = enc.self_attn.num_heads
    dh = d // nh
    w, bias = enc.self_attn.in_proj_weight, enc.self_attn.in_proj_bias
    q, k, v = h @ w[:d].T + bias[:d], h @ w[d:2 * d].T + bias[d:2 * d], h @ w[2 * d:].T + bias[2 * d:]
    heads = []
    for i in range(nh):
        sl = slice(i * dh, (i + 1) * dh)
        a = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(dh), dim=1)
        heads.append(a @ v[:, sl])
    sa = torch.cat(heads, 1) @ enc.self_attn.out_proj.weight.T + enc.self_attn.out_proj.bias
    h = ref_layer_norm(h + sa, enc.norm1)
    ff = torch.relu(h @ enc.linear1.weight.T + enc.linear1.bias) @ enc.linear2.weight.T + enc.linear2.bias
    return ref_layer_norm(h + ff, enc.norm2)


def ref_serialized(mod, x, n):
    """The module's equations, one utterance x [in_dim, T] with n valid frames, loops over heads."""
    h = x[:, :n].T @ mod.input_proj.weight.T  # H_0 [n, d]
    us, alphas = [], []
    for layer in mod.layers:
        d = h.shape[1]
        z = h if layer.norm is None else ref_layer_norm(h, layer.norm)
        mean = z.mean(0)
        std = torch.sqrt(((z - mean) ** 2).mean(0).clamp(min=layer.eps))
        q = layer.w_q.weight @ torch.cat([mean, std])
        k = z @ layer.w_k.weight.T
        v = z if layer.w_v is None else z @ layer.w_v.weight.T
        nh = layer.num_heads
        dk, dv = q.shape[0] // nh, d // nh
        mus, sigmas, head_alphas = [], [], []
        for i in range(nh):
            a = torch.softmax(k[:, i * dk:(i + 1) * dk] @ q[i * dk:(i + 1) * dk] / math.sqrt(dk), 0)
            vh = v[:, i * dv:(i + 1) * dv]
            mu = (a[:, None] * vh).sum(0)
            mus.append(mu)
            sigmas.append(torch.sqrt(((a[:, None] * vh ** 2).sum(0) - mu ** 2).clamp(min=layer.eps)))
            head_alphas.append(a)
        pooled = torch.cat(mus + sigmas) if layer.stats == "mean_std" else torch.cat(mus)
        us.append(layer.w_o.weight @ pooled + layer.w_o.bias)
        alphas.append(torch.stack(head_alphas))
        if layer.refine == "encoder":
            h = ref_encoder_layer(h, layer.encoder)
        elif layer.refine == "utterance":
            h = h + layer.w_p.weight @ torch.cat(mus)
            z = ref_layer_norm(h, layer.ff_norm)
            lin1, lin2 = layer.ff[0], layer.ff[2]
            h = h + torch.relu(z @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
    e = torch.cat(us) if mod.combine == "concat" else torch.stack(us).sum(0)
    return e, alphas


SERIALIZED_CASES = [
    dict(SMALL_SERIALIZED),
    dict(SMALL_SERIALIZED, combine="concat"),
    dict(SMALL_SERIALIZED, refine="none"),
    dict(SMALL_SERIALIZED, refine="none", combine="concat", stats="mean"),
    dict(SMALL_SERIALIZED, num_layers=3, num_heads=1),
    dict(AUTHORS_CONFIG, d_model=16, d_ff=32, att_dim=8, out_dim=12, num_layers=3),
    dict(AUTHORS_CONFIG, d_model=16, d_ff=32, att_dim=8, num_heads=2, combine="concat", num_layers=2),
]


@pytest.mark.parametrize("params", SERIALIZED_CASES)
def test_serialized_equals_reference_with_mask(params):
    torch.manual_seed(3)
    mod = SerializedMultiHeadAttentionPooling(12, **params).double().eval()
    lengths = torch.tensor([15, 9, 4])
    x = torch.randn(3, 12, 15, dtype=torch.float64)
    with torch.no_grad():
        out, alphas = mod(x, lengths, return_weights=True)
        unmasked = mod(x[:1])  # full length: the no-mask path
    for b, n in enumerate(lengths.tolist()):
        e, ref_alphas = ref_serialized(mod, x[b], n)
        assert torch.allclose(out[b, :, 0], e, atol=1e-9), (b, (out[b, :, 0] - e).abs().max())
        for alpha, ref_alpha in zip(alphas, ref_alphas):
            assert torch.allclose(alpha[b, :, :n], ref_alpha, atol=1e-10)
            assert torch.all(alpha[b, :, n:] == 0)
    assert torch.allclose(unmasked[0, :, 0], ref_serialized(mod, x[0], 15)[0], atol=1e-9)


@pytest.mark.parametrize("name,params", POOLINGS + [("serialized", dict(SMALL_SERIALIZED, combine="concat"))])
def test_padding_invariance(name, params):
    """Frames past `lengths` (filled with junk) do not change the output or the weights."""
    torch.manual_seed(4)
    pool = build_pooling(name, D, **params).double().eval()
    lengths = [13, 6, 1]
    x = torch.randn(3, D, 13, dtype=torch.float64)
    padded = x.clone()
    for b, n in enumerate(lengths):
        padded[b, :, n:] = 1e3 * torch.randn(D, 13 - n, dtype=torch.float64)
    with torch.no_grad():
        out = pool(padded, torch.tensor(lengths))
        for b, n in enumerate(lengths):
            assert torch.allclose(out[b], pool(x[b:b + 1, :, :n])[0], atol=1e-9), (name, b)


@pytest.mark.parametrize("name,params", POOLINGS[1:])
def test_attention_weights_sum_to_one(name, params):
    torch.manual_seed(5)
    pool = build_pooling(name, D, **params).eval()
    _, weights = pool(torch.randn(2, D, 11), torch.tensor([11, 7]), return_weights=True)
    for w in (weights if isinstance(weights, list) else [weights]):
        assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-6)
        assert torch.all(w[1, ..., 7:] == 0) and torch.all(w >= 0)


def test_serialized_gradients_reach_every_parameter():
    torch.manual_seed(6)
    for params in (SMALL_SERIALIZED, dict(AUTHORS_CONFIG, d_model=16, d_ff=32, att_dim=8, num_layers=2)):
        mod = SerializedMultiHeadAttentionPooling(12, **params)
        mod(torch.randn(4, 12, 9)).pow(2).sum().backward()
        missing = [n for n, p in mod.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing
