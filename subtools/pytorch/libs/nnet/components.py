"""Frame-level building blocks: the TDNN affine layer and its ReLU + BatchNorm wrapper.

All tensors are `[B, D, T]` (batch, feature dim, frames), the layout of ASV-subtools and of
`torch.nn.Conv1d`. A TDNN layer with context `[c_1 .. c_K]` computes, for every output frame,

    y_t = b + sum_k W_k x_{t + c_k}          (W_k: [out, in])

over the frames where every tap exists: no padding, so the output has
`floor((T - (c_K - c_1) - 1) / stride) + 1` frames (T - (c_K - c_1) for stride 1), output frame t
being centred on input frame `t * stride - c_1`. A segment-level layer is the same affine with
context `[0]` applied to a pooled `[B, D, 1]` tensor.
"""

import math

import torch
import torch.nn.functional as F

XVECTOR_CONTEXTS = ([-2, -1, 0, 1, 2], [-2, 0, 2], [-3, 0, 3], [0], [0])
"""Frame contexts of the standard x-vector TDNN layers (Snyder et al. 2018)."""


class TdnnAffine(torch.nn.Module):
    """Affine transform over a (possibly non-contiguous) frame context, as a conv1d.

    The weight holds only the taps named in `context` (`[out, in, len(context)]`), so a context
    like `[-2, 0, 2]` costs 3 taps, not 5. An evenly spaced context runs as a dilated conv1d;
    any other context (e.g. `[-3, 0, 1]`) is scattered into a zero kernel spanning the context
    (a masked conv1d: the gaps carry no parameters and get no gradient).

    Args:
        input_dim, output_dim: feature dims in and out.
        context: frame offsets, strictly increasing integers (e.g. [-2, 0, 2]).
        stride: frame step of the output.
        bias: add a bias.
    Shapes: `[B, input_dim, T] -> [B, output_dim, T_out]` (see the module docstring for T_out).
    """

    def __init__(self, input_dim, output_dim, context=(-2, -1, 0, 1, 2), stride=1, bias=True):
        super().__init__()
        context = [int(c) for c in context]
        if not context or any(b <= a for a, b in zip(context, context[1:])):
            raise ValueError(f"TdnnAffine: context must be strictly increasing integers, got {context}")
        if stride < 1:
            raise ValueError(f"TdnnAffine: stride must be >= 1, got {stride}")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.context, self.stride = context, stride
        self.span = context[-1] - context[0] + 1
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
        """Same initialisation as `torch.nn.Conv1d` with fan_in = input_dim * len(context)."""
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.input_dim * len(self.context))
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def masked_kernel(self):
        """The weight as a dense conv kernel `[out, in, span]`, zero at the context gaps."""
        kernel = self.weight.new_zeros(self.output_dim, self.input_dim, self.span)
        return kernel.index_copy(2, self.tap_index, self.weight)

    def forward(self, x):
        if x.dim() != 3 or x.shape[1] != self.input_dim:
            raise ValueError(f"TdnnAffine: expected [B, {self.input_dim}, T], got {list(x.shape)}")
        if x.shape[2] < self.span:
            raise ValueError(f"TdnnAffine: {x.shape[2]} frames is shorter than the context "
                             f"{self.context} ({self.span} frames)")
        if self.dilation is not None:
            return F.conv1d(x, self.weight, self.bias, stride=self.stride, dilation=self.dilation)
        return F.conv1d(x, self.masked_kernel(), self.bias, stride=self.stride)

    def extra_repr(self):
        return (f"{self.input_dim}, {self.output_dim}, context={self.context}, stride={self.stride}, "
                f"bias={self.bias is not None}")


class ReluBatchNormTdnnLayer(torch.nn.Module):
    """TdnnAffine -> ReLU -> BatchNorm1d (the ASV-subtools default order).

    Args:
        input_dim, output_dim, context, stride, bias: as `TdnnAffine`.
        bn_momentum, bn_affine: BatchNorm1d options (ASV-subtools x-vector recipes use 0.5 and
            False: PyTorch momentum, i.e. running = 0.5 * running + 0.5 * batch).
    Shapes: `[B, input_dim, T] -> [B, output_dim, T_out]`.
    """

    def __init__(self, input_dim, output_dim, context=(0,), stride=1, bias=True,
                 bn_momentum=0.1, bn_affine=True):
        super().__init__()
        self.affine = TdnnAffine(input_dim, output_dim, context=context, stride=stride, bias=bias)
        self.batchnorm = torch.nn.BatchNorm1d(output_dim, momentum=bn_momentum, affine=bn_affine)
        self.output_dim = output_dim

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
        **layer_params: passed to every ReluBatchNormTdnnLayer (bn_momentum, bn_affine).
    Shapes: `[B, F, T] -> [B, channels[-1], T - sum of context widths]`; `.output_dim`,
    `.frames_lost` (frames consumed by the contexts).
    """

    def __init__(self, input_dim, channels=(512, 512, 512, 512, 1500), contexts=None, **layer_params):
        contexts = list(XVECTOR_CONTEXTS[:len(channels)] if contexts is None else contexts)
        if len(contexts) != len(channels):
            raise ValueError(f"TdnnStack: {len(channels)} channels but {len(contexts)} contexts")
        dims = [input_dim] + list(channels)
        super().__init__(*[ReluBatchNormTdnnLayer(dims[i], dims[i + 1], context=contexts[i], **layer_params)
                           for i in range(len(channels))])
        self.output_dim = dims[-1]
        self.frames_lost = sum(c[-1] - c[0] for c in contexts)
