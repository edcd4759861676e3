"""Frame-level building blocks: the TDNN affine layer and its ReLU + BatchNorm wrapper.

All tensors are `[B, D, T]` (batch, feature dim, frames), the layout of ASV-subtools and of
`torch.nn.Conv1d`. A TDNN layer with context `[c_1 .. c_K]` computes, for every output frame,

    y_t = b + sum_k W_k x_{t + c_k}          (W_k: [out, in])

* `pad=False`: only over the frames where every tap exists, so the output has
  `floor((T - (c_K - c_1) - 1) / stride) + 1` frames (T - (c_K - c_1) for stride 1), output frame j
  being centred on input frame `j * stride - c_1`.
* `pad=True` (ASV-subtools' `TdnnAffine` default, on in the paper configs): the input is taken as zero
  outside its T frames, so T frames in give `floor((T - 1) / stride) + 1` out (T for stride 1), output
  frame j centred on input frame `j * stride`; any T >= 1 works.

A segment-level layer is the same affine with context `[0]` applied to a pooled `[B, D, 1]` tensor.

Initialisation as ASV-subtools (`libs/nnet/components.py` of the authors' copy): a bare `TdnnAffine`
draws W ~ N(0, 0.01^2) with zero bias; a `ReluBatchNormTdnnLayer` then redraws W Kaiming-uniform for
ReLU with mode fan_out, i.e. U(-b, b) with b = sqrt(2) * sqrt(3 / fan_out), where ASV-subtools'
fan_out = out * (its dense kernel's width `kernel_span`, gaps included).
"""

import math

import torch
import torch.nn.functional as F

XVECTOR_CONTEXTS = ([-2, -1, 0, 1, 2], [-2, 0, 2], [-3, 0, 3], [0], [0])
"""Frame contexts of the standard x-vector TDNN layers (Snyder et al. 2018)."""


class TdnnAffine(torch.nn.Module):
    """Affine transform over a (possibly non-contiguous) frame context, as a conv1d.

    The weight holds only the taps named in `context` (`[out, in, len(context)]`), so a context
    like `[-2, 0, 2]` costs 3 taps, not 5 (ASV-subtools stores the 5 and multiplies 2 by a zero
    mask: same outputs, same gradients of the 3). An evenly spaced context runs as a dilated conv1d;
    any other context (e.g. `[-3, 0, 1]`) is scattered into a zero kernel spanning the context
    (a masked conv1d: the gaps carry no parameters and get no gradient).

    Args:
        input_dim, output_dim: feature dims in and out.
        context: frame offsets, strictly increasing integers (e.g. [-2, 0, 2]).
        stride: frame step of the output.
        bias: add a bias.
        pad: zero-pad so that output frame j is centred on input frame j * stride (module docstring).
    Shapes: `[B, input_dim, T] -> [B, output_dim, T_out]` (see the module docstring for T_out).
    Attributes: `kernel_span`, the width of ASV-subtools' dense kernel (offsets min(c_1, 0) ..
    max(c_K, 0)), which sets fan_out in its initialisation.
    """

    def __init__(self, input_dim, output_dim, context=(-2, -1, 0, 1, 2), stride=1, bias=True, pad=False):
        super().__init__()
        context = [int(c) for c in context]
        if not context or any(b <= a for a, b in zip(context, context[1:])):
            raise ValueError(f"TdnnAffine: context must be strictly increasing integers, got {context}")
        if stride < 1:
            raise ValueError(f"TdnnAffine: stride must be >= 1, got {stride}")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.context, self.stride, self.pad = context, stride, bool(pad)
        self.span = context[-1] - context[0] + 1
        self.kernel_span = max(context[-1], 0) - min(context[0], 0) + 1
        steps = {b - a for a, b in zip(context, context[1:])}
        # Evenly spaced taps (or a single tap) run as a dilated conv; others scatter (masked conv).
        self.dilation = steps.pop() if len(steps) == 1 else (1 if not steps else None)
        if self.dilation is None:
            self.register_buffer("tap_index", torch.tensor([c - context[0] for c in context]),
                                 persistent=False)
        self.weight = torch.nn.Parameter(torch.empty(output_dim, input_dim, len(context)))
        self.bias = torch.nn.Parameter(torch.empty(output_dim)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """ASV-subtools' `TdnnAffine.init_weight`: W ~ N(0, 0.01^2), bias 0."""
        torch.nn.init.normal_(self.weight, 0.0, 0.01)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def masked_kernel(self):
        """The weight as a dense conv kernel `[out, in, span]`, zero at the context gaps."""
        kernel = self.weight.new_zeros(self.output_dim, self.input_dim, self.span)
        return kernel.index_copy(2, self.tap_index, self.weight)

    def forward(self, x):
        if x.dim() != 3 or x.shape[1] != self.input_dim:
            raise ValueError(f"TdnnAffine: expected [B, {self.input_dim}, T], got {list(x.shape)}")
        if x.shape[2] < (1 if self.pad else self.span):
            raise ValueError(f"TdnnAffine: {x.shape[2]} frames is shorter than the context "
                             f"{self.context} ({self.span} frames; pad=True accepts any length)")
        left, right = (-self.context[0], self.context[-1]) if self.pad else (0, 0)
        if left == right:  # symmetric (every x-vector context): conv1d pads without a copy of x
            padding = left
        else:  # a negative amount crops: a context right of frame 0 (c_1 > 0) drops the first c_1 frames
            x, padding = F.pad(x, (left, right)), 0
        if self.dilation is not None:
            return F.conv1d(x, self.weight, self.bias, stride=self.stride, padding=padding, dilation=self.dilation)
        return F.conv1d(x, self.masked_kernel(), self.bias, stride=self.stride, padding=padding)

    def extra_repr(self):
        return (f"{self.input_dim}, {self.output_dim}, context={self.context}, stride={self.stride}, "
                f"bias={self.bias is not None}, pad={self.pad}")


class ReluBatchNormTdnnLayer(torch.nn.Module):
    """TdnnAffine -> ReLU -> BatchNorm1d (the ASV-subtools default order), ASV-subtools initialisation.

    Args:
        input_dim, output_dim, context, stride, bias, pad: as `TdnnAffine`.
        bn_momentum, bn_affine: BatchNorm1d options (ASV-subtools x-vector recipes use 0.5 and
            False: PyTorch momentum, i.e. running = 0.5 * running + 0.5 * batch).
    Shapes: `[B, input_dim, T] -> [B, output_dim, T_out]`.
    """

    def __init__(self, input_dim, output_dim, context=(0,), stride=1, bias=True, pad=False,
                 bn_momentum=0.1, bn_affine=True):
        super().__init__()
        self.affine = TdnnAffine(input_dim, output_dim, context=context, stride=stride, bias=bias, pad=pad)
        self.batchnorm = torch.nn.BatchNorm1d(output_dim, momentum=bn_momentum, affine=bn_affine)
        self.output_dim = output_dim
        self.reset_parameters()

    def reset_parameters(self):
        """Kaiming-uniform for ReLU, mode fan_out over ASV-subtools' dense kernel; bias stays 0."""
        fan_out = self.affine.output_dim * self.affine.kernel_span
        bound = torch.nn.init.calculate_gain("relu") * math.sqrt(3.0 / fan_out)
        torch.nn.init.uniform_(self.affine.weight, -bound, bound)

    def forward(self, x, return_affine=False):
        """-> output, or (output, affine output) with return_affine (for embedding extraction)."""
        affine = self.affine(x)
        out = self.batchnorm(F.relu(affine))
        return (out, affine) if return_affine else out


class TdnnStack(torch.nn.Sequential):
    """The frame-level stack of an x-vector: one ReluBatchNormTdnnLayer per entry of `channels`.

    Args:
        input_dim: acoustic feature dim F.
        channels: output dims of the layers (x-vector: [512, 512, 512, 512, 1500]).
        contexts: frame context of each layer (default: the first len(channels) of
            XVECTOR_CONTEXTS).
        **layer_params: passed to every ReluBatchNormTdnnLayer (pad, bn_momentum, bn_affine).
    Shapes: `[B, F, T] -> [B, channels[-1], T - frames_lost]`; `.output_dim`, `.frames_lost`
    (frames consumed by the contexts: 0 with pad=True).
    """

    def __init__(self, input_dim, channels=(512, 512, 512, 512, 1500), contexts=None, **layer_params):
        contexts = list(XVECTOR_CONTEXTS[:len(channels)] if contexts is None else contexts)
        if len(contexts) != len(channels):
            raise ValueError(f"TdnnStack: {len(channels)} channels but {len(contexts)} contexts")
        dims = [input_dim] + list(channels)
        super().__init__(*[ReluBatchNormTdnnLayer(dims[i], dims[i + 1], context=contexts[i], **layer_params)
                           for i in range(len(channels))])
        self.output_dim = dims[-1]
        self.frames_lost = 0 if layer_params.get("pad") else sum(c[-1] - c[0] for c in contexts)
