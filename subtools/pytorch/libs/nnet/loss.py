"""Classification losses on the segment-level hidden vector, with margin warm-up.

Every loss: `forward(x [B, D] or [B, D, 1], targets [B] long) -> (loss scalar, logits [B, C])`
and `step(epoch_progress)`. The logits (detached) are what accuracy is computed from: for the margin
losses they are the un-margined scaled cosines `s * cos(theta_j)` (the margin only enters the
loss), so accuracy means "the nearest class centre by cosine".

Margin warm-up: with `warmup_epochs > 0` the margin grows linearly from 0 to `m` over that many
epochs, `m_now = m * min(1, epoch_progress / warmup_epochs)`, where `epoch_progress` is the
number of epochs done as a float (2.5 = half-way through the third epoch); the trainer calls
`model.step(epoch_progress)` before each iteration. Until the first `step` call the full
margin applies (so a loss built for evaluation needs no schedule).
"""

import math

import torch
import torch.nn.functional as F


def _flatten(x):
    """[B, D, 1] or [B, D] -> [B, D]."""
    if x.dim() == 3:
        if x.shape[2] != 1:
            raise ValueError(f"loss: expected [B, D, 1], got {list(x.shape)}")
        x = x.squeeze(2)
    return x


class SoftmaxLoss(torch.nn.Module):
    """Cross-entropy over a final linear layer (with bias). logits = W x + b.

    Initialised as ASV-subtools' `SoftmaxLoss` (a `TdnnAffine`): W ~ N(0, 0.01^2), b = 0.
    """

    def __init__(self, input_dim, num_targets):
        super().__init__()
        self.affine = torch.nn.Linear(input_dim, num_targets)
        torch.nn.init.normal_(self.affine.weight, 0.0, 0.01)
        torch.nn.init.zeros_(self.affine.bias)

    def forward(self, x, targets):
        logits = self.affine(_flatten(x))
        return F.cross_entropy(logits, targets), logits.detach()

    def step(self, epoch_progress):
        """No margin: nothing to schedule."""


class MarginSoftmaxLoss(torch.nn.Module):
    """Additive-margin (AM, CosFace) or additive-angular-margin (AAM, ArcFace) softmax.

    cos_j = <x / |x|, w_j / |w_j|> (weights W [C, D], no bias). For the target class y:
      am:  s * (cos_y - m)
      aam: s * cos(theta_y + m) = s * (cos_y cos m - sin_y sin m) while theta_y + m <= pi,
           else s * (cos_y - m sin m) (the standard ArcFace fallback that keeps the target
           logit decreasing in theta; no "easy margin").
    Other classes: s * cos_j. Loss = cross-entropy of those logits. W ~ N(0, 0.01^2) as
    ASV-subtools' `MarginSoftmaxLoss`.

    Args: input_dim, num_targets, method "am" | "aam", m (margin: cosine for am, radians for aam),
        s (scale), warmup_epochs (0: no warm-up).
    """

    def __init__(self, input_dim, num_targets, method="am", m=0.2, s=30.0, warmup_epochs=0.0):
        super().__init__()
        if method not in ("am", "aam"):
            raise ValueError(f"MarginSoftmaxLoss: method must be am|aam, got {method!r}")
        self.method, self.m_max, self.s, self.warmup_epochs = method, float(m), float(s), float(warmup_epochs)
        self.m = self.m_max
        self.weight = torch.nn.Parameter(torch.empty(num_targets, input_dim))
        torch.nn.init.normal_(self.weight, 0.0, 0.01)

    def step(self, epoch_progress):
        """Set the current margin from the epochs done (float)."""
        if self.warmup_epochs > 0:
            self.m = self.m_max * min(1.0, max(0.0, epoch_progress) / self.warmup_epochs)
        else:
            self.m = self.m_max

    def forward(self, x, targets):
        cosine = F.linear(F.normalize(_flatten(x), dim=1), F.normalize(self.weight, dim=1))
        cos_y = cosine.gather(1, targets.unsqueeze(1))
        if self.method == "am":
            target_logit = cos_y - self.m
        else:
            sin_y = torch.sqrt((1.0 - cos_y ** 2).clamp(min=0.0))
            shifted = cos_y * math.cos(self.m) - sin_y * math.sin(self.m)
            target_logit = torch.where(cos_y > math.cos(math.pi - self.m), shifted,
                                       cos_y - self.m * math.sin(self.m))
        margined = cosine.scatter(1, targets.unsqueeze(1), target_logit)
        return F.cross_entropy(self.s * margined, targets), (self.s * cosine).detach()

    def extra_repr(self):
        return f"method={self.method}, m={self.m_max}, s={self.s}, warmup_epochs={self.warmup_epochs}"


def build_loss(name, input_dim, num_targets, **params):
    """Loss by its yaml name: softmax | am_softmax | aam_softmax (params: m, s, warmup_epochs)."""
    if name == "softmax":
        if params:
            raise ValueError(f"softmax loss takes no parameters, got {sorted(params)}")
        return SoftmaxLoss(input_dim, num_targets)
    methods = {"am_softmax": "am", "aam_softmax": "aam"}
    if name not in methods:
        raise ValueError(f"unknown loss {name!r}; choose softmax, am_softmax or aam_softmax")
    return MarginSoftmaxLoss(input_dim, num_targets, method=methods[name], **params)
