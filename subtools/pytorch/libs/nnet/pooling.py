"""Utterance-level pooling layers: frame features `[B, D, T]` -> one vector `[B, D_out, 1]`.

Every pooling has `get_output_dim()` and `forward(x, lengths=None, return_weights=False)`:
`lengths` ([B] ints, optional) gives the number of valid frames of each row, counted from
frame 0; later frames are padding and do not change the output. Attention poolings return
`(output, weights)` when `return_weights` is true (weights sum to 1 over the valid frames).
`build_pooling(name, in_dim, **params)` picks one by the name used in the yaml configs.

Standard deviations are always `sqrt(max(var, eps))` with the variance of the (weighted) frames
computed two-pass, `sum_t w_t (x_t - mu)^2`, which equals `sum_t w_t x_t^2 - mu^2`.

Serialized multi-layer multi-head attention (Zhu, Lee, Li, Interspeech 2021, arXiv 2107.06493;
journal version: Speech Communication 144, 2022) -- what comes from where:

* The papers' words (abstracts and introduction): frame features pass through a stack of
  attention layers so later layers see refined frames; every layer pools the frames into an
  utterance-level vector by attentive statistics (weighted mean and std); the query of the
  attention is input-aware, derived from the statistics of the utterance itself; the layer
  vectors are aggregated in series (layer after layer, propagated by a residual connection)
  instead of parallel heads being concatenated; the aggregate is the speaker embedding.
* The authors' released code (github.com/clockw/Serialized-Attention-for-Speaker-Verification,
  `SerializedMultiHeadMultiLayerAttention`, read to check these equations, nothing copied)
  settles the details our spec (SPEC §6.1) had to guess: per layer ONE head whose query is
  `W_q [mean_t; std_t]` of the layer-normed frames (attention dim 128, values = the normed frames
  themselves, no value projection); `u_l = W_o [mu; sigma] + b` of size d_model; the layer's
  attentive mean is projected and ADDED TO EVERY FRAME (`H + W_p mu`) before a pre-norm
  feed-forward block (d_ff = 2 d_model): that is the "residual propagation to the next layer";
  there is no frame-level self-attention. `e = sum_l u_l`; their recipe uses d_model 256 (a 1x1
  conv 512 -> 256 after three TDNN layers), 6 layers, dropout 0.1, and e is the embedding.
  `AUTHORS_CONFIG` below reproduces that module (LayerNorm eps 1e-6 as theirs, the std floor 1e-10,
  PyTorch's default initialisation of every attention layer, as theirs), except that the last
  layer's refinement, whose output nobody reads, is not built. Their model puts ReLU + BatchNorm
  after e (done in serialized-tdnn-xvector.py, not here).
* Our reading (SPEC §6.1, the constructor defaults): H heads per layer with d_k = d_model / H,
  value projection, `u_l` of size 2 d_model, dropout on `u_l`, and a post-norm Transformer
  encoder layer (H-head self-attention + feed-forward) to refine the frames (`refine="encoder"`).
  `refine="none"` pools the same frames in every layer (the parallel baseline's analogue) and
  `combine="concat"` concatenates the u_l instead of summing them (ablations).
"""

import math

import torch
import torch.nn.functional as F

from subtools.pytorch.libs.nnet.components import TdnnAffine


def lengths_to_mask(lengths, num_frames, device=None):
    """[B] valid-frame counts -> bool mask [B, num_frames], True on valid frames."""
    lengths = torch.as_tensor(lengths, device=device)
    if (lengths < 1).any() or (lengths > num_frames).any():
        raise ValueError(f"lengths must lie in [1, {num_frames}], got {lengths.tolist()}")
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


def weighted_mean_std(x, weights, eps=1.0e-10):
    """Weighted statistics over the last axis.

    Args:
        x: [..., T] values; weights: [..., T] broadcastable to x, non-negative, summing to 1 over T.
    Returns: (mean [...], std [...]) with std = sqrt(max(sum_t w_t (x_t - mean)^2, eps)).
    """
    mean = (weights * x).sum(-1)
    var = (weights * (x - mean.unsqueeze(-1)) ** 2).sum(-1)
    return mean, torch.sqrt(var.clamp(min=eps))


def _masked_softmax(scores, mask):
    """Softmax over the last axis (frames) with padded frames (mask False) given weight 0."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def _check_input(x, input_dim, lengths):
    if x.dim() != 3 or x.shape[1] != input_dim:
        raise ValueError(f"pooling: expected [B, {input_dim}, T], got {list(x.shape)}")
    return None if lengths is None else lengths_to_mask(lengths, x.shape[2], device=x.device)


class StatisticsPooling(torch.nn.Module):
    """Mean and standard deviation over frames (x-vector statistics pooling).

    Args:
        input_dim: D.
        stddev: append the std (output 2D) or not (output D).
        unbiased: divide the variance by n - 1 instead of n (n = valid frames; n = 1 keeps n).
            Default False, as ASV-subtools `StatisticsPooling` (and Kaldi's stats layer).
        eps: variance floor before the square root (ASV-subtools: 1e-10).
    Shapes: `[B, D, T] -> [B, 2D, 1]` = `[mean; std]`.
    """

    def __init__(self, input_dim, stddev=True, unbiased=False, eps=1.0e-10):
        super().__init__()
        self.input_dim, self.stddev, self.unbiased, self.eps = input_dim, stddev, unbiased, eps

    def get_output_dim(self):
        return 2 * self.input_dim if self.stddev else self.input_dim

    def forward(self, x, lengths=None):
        mask = _check_input(x, self.input_dim, lengths)
        if mask is None:
            counts = torch.full((x.shape[0], 1, 1), x.shape[2], dtype=x.dtype, device=x.device)
            weights = torch.ones_like(x[:, :1, :]) / counts
        else:
            mask = mask.unsqueeze(1).to(x.dtype)
            counts = mask.sum(-1, keepdim=True)
            weights = mask / counts
        mean, std = weighted_mean_std(x, weights, eps=self.eps)
        if not self.stddev:
            return mean.unsqueeze(2)
        if self.unbiased:
            n = counts.squeeze(2)
            correction = torch.where(n > 1, n / (n - 1).clamp(min=1), torch.ones_like(n))
            std = torch.sqrt((std ** 2 * correction).clamp(min=self.eps))
        return torch.cat([mean, std], dim=1).unsqueeze(2)


class AttentiveStatisticsPooling(torch.nn.Module):
    """Attentive statistics pooling (Okabe, Koshinaka, Shinoda, Interspeech 2018), in ASV-subtools' form.

    Frame scores from one or two affines (ASV-subtools `AttentionAlphaComponent`, one head, shared
    weights), each a zero-padded `TdnnAffine` over the frame context `context` ([0]: the frame alone):
      affine_layers=1: e_t = w^T x_t + b              (a linear score; the authors' baselines,
                                                       run-xvector.py sets affine_layers 1)
      affine_layers=2: e_t = v^T relu(W x_t + b) + k  (hidden_size units; Okabe et al., ASV-subtools
                                                       default)
    alpha = softmax_t(e), mu = sum_t alpha_t x_t, sigma = sqrt(max(sum_t alpha_t (x_t - mu)^2, eps))
    (ASV-subtools computes sum_t alpha_t x_t^2 - mu^2: the same value up to rounding); output
    [mu; sigma], or mu alone without `stddev`. The affines keep `TdnnAffine`'s ASV-subtools
    initialisation, N(0, 0.01^2) weights and zero biases.

    Args: input_dim D, affine_layers (1 | 2), hidden_size, context (frame offsets), stddev, eps.
    Shapes: `[B, D, T] -> [B, 2D (D without stddev), 1]`; weights `[B, T]`.
    """

    def __init__(self, input_dim, affine_layers=2, hidden_size=64, context=(0,), stddev=True, eps=1.0e-10):
        super().__init__()
        if affine_layers not in (1, 2):
            raise ValueError(f"AttentiveStatisticsPooling: affine_layers must be 1 or 2, got {affine_layers}")
        self.input_dim, self.stddev, self.eps = input_dim, stddev, eps
        dims = [input_dim, 1] if affine_layers == 1 else [input_dim, hidden_size, 1]
        self.affines = torch.nn.ModuleList([TdnnAffine(dims[i], dims[i + 1], context=context, pad=True)
                                            for i in range(len(dims) - 1)])

    def get_output_dim(self):
        return 2 * self.input_dim if self.stddev else self.input_dim

    def scores(self, x, mask=None):
        """e `[B, T]`. Padded frames are zeroed before every affine, as the zero padding past an
        utterance's end, so a frame context never reads them."""
        h = x
        for index, affine in enumerate(self.affines):
            if mask is not None:
                h = h.masked_fill(~mask.unsqueeze(1), 0.0)
            h = affine(h if index == 0 else F.relu(h))
        return h.squeeze(1)

    def forward(self, x, lengths=None, return_weights=False):
        mask = _check_input(x, self.input_dim, lengths)
        alpha = _masked_softmax(self.scores(x, mask), mask)  # [B, T]
        mean, std = weighted_mean_std(x, alpha.unsqueeze(1), eps=self.eps)
        out = (torch.cat([mean, std], dim=1) if self.stddev else mean).unsqueeze(2)
        return (out, alpha) if return_weights else out


class MultiHeadAttentionPooling(torch.nn.Module):
    """Self multi-head attention pooling (India, Safari, Hernando, Interspeech 2019).

    The frame vector is split into H slices of d_h = D / H; head j has its own learned vector
    u_j: alpha_j = softmax_t(x_t^(j) . u_j / sqrt(d_h)), c_j = sum_t alpha_jt x_t^(j); the c_j are
    concatenated (dim D). With `stddev` (default, as ASV-subtools, so that it is comparable to
    statistics pooling) each head's weighted std is appended: output [mu_1..mu_H; s_1..s_H], 2D.

    Args: input_dim D (divisible by num_heads), num_heads H, stddev, eps.
    Shapes: `[B, D, T] -> [B, 2D or D, 1]`; weights `[B, H, T]`.
    """

    def __init__(self, input_dim, num_heads=4, stddev=True, eps=1.0e-10):
        super().__init__()
        if input_dim % num_heads:
            raise ValueError(f"MultiHeadAttentionPooling: input_dim {input_dim} not divisible by "
                             f"num_heads {num_heads}")
        self.input_dim, self.num_heads, self.stddev, self.eps = input_dim, num_heads, stddev, eps
        self.head_dim = input_dim // num_heads
        self.u = torch.nn.Parameter(torch.randn(num_heads, self.head_dim) / math.sqrt(self.head_dim))

    def get_output_dim(self):
        return 2 * self.input_dim if self.stddev else self.input_dim

    def forward(self, x, lengths=None, return_weights=False):
        mask = _check_input(x, self.input_dim, lengths)
        b, _, t = x.shape
        heads = x.reshape(b, self.num_heads, self.head_dim, t)
        scores = torch.einsum("bhdt,hd->bht", heads, self.u) / math.sqrt(self.head_dim)
        alpha = _masked_softmax(scores, None if mask is None else mask.unsqueeze(1))  # [B, H, T]
        mean, std = weighted_mean_std(heads, alpha.unsqueeze(2), eps=self.eps)  # [B, H, d_h]
        stats = [mean.reshape(b, -1)] + ([std.reshape(b, -1)] if self.stddev else [])
        out = torch.cat(stats, dim=1).unsqueeze(2)
        return (out, alpha) if return_weights else out


class SerializedAttentionLayer(torch.nn.Module):
    """One layer of the serialized attention: pool the frames, then refine them for the next layer.

    forward(h [B, T, d_model], mask [B, T] or None) -> (h_next [B, T, d_model], u [B, out_dim],
    alpha [B, H, T]). See `SerializedMultiHeadAttentionPooling` for the equations and arguments.
    """

    def __init__(self, d_model, num_heads, d_ff, dropout, pool_dropout, att_dim, value_proj,
                 out_dim, stats, pre_norm, refine, eps, layer_norm_eps):
        super().__init__()
        if att_dim % num_heads or d_model % num_heads:
            raise ValueError(f"serialized attention: d_model {d_model} and att_dim {att_dim} must be "
                             f"divisible by num_heads {num_heads}")
        self.num_heads, self.att_dim, self.stats, self.refine, self.eps = num_heads, att_dim, stats, refine, eps
        self.norm = torch.nn.LayerNorm(d_model, eps=layer_norm_eps) if pre_norm else None
        self.w_q = torch.nn.Linear(2 * d_model, att_dim, bias=False)
        self.w_k = torch.nn.Linear(d_model, att_dim, bias=False)
        self.w_v = torch.nn.Linear(d_model, d_model, bias=False) if value_proj else None
        pooled_dim = 2 * d_model if stats == "mean_std" else d_model
        self.w_o = torch.nn.Linear(pooled_dim, out_dim)
        self.pool_dropout = torch.nn.Dropout(pool_dropout)
        if refine not in ("encoder", "utterance", "none"):
            raise ValueError(f"serialized attention: refine must be encoder|utterance|none, got {refine!r}")
        if refine == "encoder":
            self.encoder = torch.nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout,
                                                            layer_norm_eps=layer_norm_eps, batch_first=True)
        elif refine == "utterance":
            self.w_p = torch.nn.Linear(d_model, d_model, bias=False)
            self.ff_norm = torch.nn.LayerNorm(d_model, eps=layer_norm_eps)
            self.ff = torch.nn.Sequential(torch.nn.Linear(d_model, d_ff), torch.nn.ReLU(),
                                          torch.nn.Linear(d_ff, d_model))
            self.dropout = torch.nn.Dropout(dropout)

    def forward(self, h, mask=None):
        b, t, d = h.shape
        z = h if self.norm is None else self.norm(h)
        frame_w = (torch.ones(b, 1, t, dtype=h.dtype, device=h.device) / t if mask is None
                   else mask.unsqueeze(1).to(h.dtype) / mask.sum(1).view(b, 1, 1).to(h.dtype))
        s_mean, s_std = weighted_mean_std(z.transpose(1, 2), frame_w, eps=self.eps)  # [B, d] each
        dk = self.att_dim // self.num_heads
        q = self.w_q(torch.cat([s_mean, s_std], dim=1)).view(b, self.num_heads, dk)
        k = self.w_k(z).reshape(b, t, self.num_heads, dk)
        v = (z if self.w_v is None else self.w_v(z)).reshape(b, t, self.num_heads, d // self.num_heads)
        scores = torch.einsum("bhk,bthk->bht", q, k) / math.sqrt(dk)
        alpha = _masked_softmax(scores, None if mask is None else mask.unsqueeze(1))  # [B, H, T]
        mu, sigma = weighted_mean_std(v.permute(0, 2, 3, 1), alpha.unsqueeze(2), eps=self.eps)
        pooled = [mu.reshape(b, d)] + ([sigma.reshape(b, d)] if self.stats == "mean_std" else [])
        u = self.pool_dropout(self.w_o(torch.cat(pooled, dim=1)))
        if self.refine == "encoder":
            h = self.encoder(h, src_key_padding_mask=None if mask is None else ~mask)
        elif self.refine == "utterance":
            h = h + self.dropout(self.w_p(mu.reshape(b, 1, d)))
            h = h + self.dropout(self.ff(self.ff_norm(h)))
        return h, u, alpha


class SerializedMultiHeadAttentionPooling(torch.nn.Module):
    """Serialized multi-layer multi-head attention pooling (see the module docstring for sources).

    Input X `[B, in_dim, T]`:
      1. H_0 = X^T W_in (per-frame linear in_dim -> d_model, no bias), e_0 = 0.
      2. For l = 1..L, with Z = LayerNorm(H_{l-1}) if pre_norm else H_{l-1}:
         a. input-aware query: s = [mean_t Z; std_t Z], q = W_q s split into H heads of
            d_k = att_dim / H;
         b. K = Z W_k (heads of d_k), V = Z W_v (or V = Z without value_proj; heads of d_model/H);
            per head alpha = softmax_t(q . K_t / sqrt(d_k)), mu = sum_t alpha_t V_t,
            sigma = sqrt(max(sum_t alpha_t V_t^2 - mu^2, eps));
         c. u_l = pool_dropout(W_o [mu_1..mu_H; sigma_1..sigma_H] + b_o), size out_dim
            (stats="mean": W_o [mu_1..mu_H]);
         d. e_l = e_{l-1} + u_l (combine="sum") or the concatenation of u_1..u_l ("concat");
         e. refine: "encoder": H_l = TransformerEncoderLayer(H_{l-1}) (post-norm, H heads,
            ReLU feed-forward d_ff, dropout); "utterance" (the authors' code):
            H' = H_{l-1} + dropout(W_p [mu_1..mu_H]) (same vector added to every frame),
            H_l = H' + dropout(FF(LayerNorm(H'))); "none": H_l = H_{l-1}.
            H_L is never pooled, so the last layer has no refinement (the authors' code builds one
            whose output is discarded: parameters without gradient, which DDP rejects).
      3. Output e_L `[B, out_dim, 1]` (`[B, L * out_dim, 1]` for concat).

    Args:
        in_dim: frame feature dim of X.
        d_model, num_layers (L), num_heads (H), d_ff, dropout: as above (SPEC §6.1 defaults).
        stats: "mean_std" | "mean", the attentive statistics each layer pools.
        combine: "sum" | "concat"; refine: "encoder" | "utterance" | "none".
        att_dim: query/key size (default d_model); value_proj: project the values (default True);
        out_dim: size of u_l (default 2 d_model); pre_norm: LayerNorm before pooling (default
        False); pool_dropout: dropout on u_l (default = dropout); eps: std floor;
        layer_norm_eps: eps of every LayerNorm (PyTorch's 1e-5 by default, the authors' 1e-6 in
        AUTHORS_CONFIG and the paper configs).
    forward(x, lengths=None, return_weights=False) -> e_L, or (e_L, [alpha_l [B, H, T]] * L).
    """

    def __init__(self, in_dim, d_model=512, num_layers=3, num_heads=4, d_ff=2048, dropout=0.1,
                 stats="mean_std", combine="sum", refine="encoder", att_dim=None, value_proj=True,
                 out_dim=None, pre_norm=False, pool_dropout=None, eps=1.0e-10, layer_norm_eps=1.0e-5):
        super().__init__()
        if stats not in ("mean_std", "mean"):
            raise ValueError(f"serialized attention: stats must be mean_std|mean, got {stats!r}")
        if combine not in ("sum", "concat"):
            raise ValueError(f"serialized attention: combine must be sum|concat, got {combine!r}")
        self.in_dim, self.num_layers, self.combine = in_dim, num_layers, combine
        self.out_dim = 2 * d_model if out_dim is None else out_dim
        self.input_proj = torch.nn.Linear(in_dim, d_model, bias=False)
        self.layers = torch.nn.ModuleList([
            SerializedAttentionLayer(d_model, num_heads, d_ff, dropout,
                                     dropout if pool_dropout is None else pool_dropout,
                                     d_model if att_dim is None else att_dim, value_proj,
                                     self.out_dim, stats, pre_norm,
                                     refine if index < num_layers - 1 else "none", eps, layer_norm_eps)
            for index in range(num_layers)])

    def get_output_dim(self):
        return self.out_dim * (self.num_layers if self.combine == "concat" else 1)

    def forward(self, x, lengths=None, return_weights=False):
        mask = _check_input(x, self.in_dim, lengths)
        h = self.input_proj(x.transpose(1, 2))
        outputs, weights = [], []
        for layer in self.layers:
            h, u, alpha = layer(h, mask)
            outputs.append(u)
            weights.append(alpha)
        e = torch.cat(outputs, dim=1) if self.combine == "concat" else torch.stack(outputs).sum(0)
        e = e.unsqueeze(2)
        return (e, weights) if return_weights else e


AUTHORS_CONFIG = dict(d_model=256, num_layers=6, num_heads=1, d_ff=512, dropout=0.1, stats="mean_std",
                      combine="sum", refine="utterance", att_dim=128, value_proj=False, out_dim=256,
                      pre_norm=True, pool_dropout=0.0, layer_norm_eps=1.0e-6)
"""`pooling_params` reproducing the authors' released module (their recipe: 6 layers, d_model 256)."""

POOLINGS = {
    "stats": StatisticsPooling,
    "statistics": StatisticsPooling,
    "attentive": AttentiveStatisticsPooling,
    "multihead": MultiHeadAttentionPooling,
    "serialized": SerializedMultiHeadAttentionPooling,
}


def build_pooling(name, in_dim, **params):
    """Pooling by its yaml name: stats|statistics, attentive, multihead, serialized."""
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {sorted(POOLINGS)}")
    return POOLINGS[name](in_dim, **params)
