"""Blueprint: the standard x-vector (Snyder et al. 2018), pooling chosen by name.

    [B, F, T] -> TDNN 512 [-2..2] -> 512 [-2,0,2] -> 512 [-3,0,3] -> 512 [0] -> 1500 [0]
              -> pooling (stats | attentive | multihead | serialized)          [B, P, 1]
              -> segment layer 1 (affine P -> 512, ReLU, BN)   "far" = its affine output
              -> segment layer 2 (affine 512 -> 512, ReLU, BN) "near" = its affine output
              -> dropout -> loss (softmax | am_softmax | aam_softmax)
Each TDNN/segment layer is affine -> ReLU -> BatchNorm (ASV-subtools order and initialisation, see
components.py). With `pad: true`, `pooling: stats` and the defaults below this is the baseline of the
authors' run-xvector.py (ASV-subtools snowdar-xvector.py with tdnn6 on: tdnn1-5, statistics pooling,
tdnn6, tdnn7, softmax; their embedding is "far" = tdnn6's affine output); with `pooling: attentive`
and `pooling_params: {affine_layers: 1, hidden_size: 64, context: [0], stddev: true}` their
attentive baseline. Loaded by path with
`subtools.pytorch.libs.nnet.framework.load_blueprint(path, "Xvector")`.
"""

import torch

from subtools.pytorch.libs.nnet.components import ReluBatchNormTdnnLayer, TdnnStack
from subtools.pytorch.libs.nnet.framework import SpeakerEmbeddingModel
from subtools.pytorch.libs.nnet.loss import build_loss
from subtools.pytorch.libs.nnet.pooling import build_pooling


class Xvector(SpeakerEmbeddingModel):
    """Standard x-vector.

    Args:
        inputs_dim: acoustic feature dim F; num_targets: speakers C.
        channels: frame-layer widths (default [512, 512, 512, 512, 1500]); contexts: their frame
            contexts (default the x-vector ones, see components.XVECTOR_CONTEXTS).
        pad: zero-pad the TDNN layers, T frames in -> T out (ASV-subtools; the paper configs set
            true); false drops the edge frames (T - 14 with the x-vector contexts).
        pooling: "stats" | "attentive" | "multihead" | "serialized"; pooling_params: its kwargs.
        embd_dim: width of both segment layers (512).
        loss: "softmax" | "am_softmax" | "aam_softmax"; loss_params: m, s, warmup_epochs.
        dropout: dropout on the last segment hidden before the loss.
        bn_momentum, bn_affine: BatchNorm options of every layer (ASV-subtools recipes: 0.5, False).
    """

    def __init__(self, inputs_dim, num_targets, channels=(512, 512, 512, 512, 1500), contexts=None,
                 pad=False, pooling="stats", pooling_params=None, embd_dim=512, loss="softmax",
                 loss_params=None, dropout=0.0, bn_momentum=0.5, bn_affine=False):
        super().__init__()
        bn = dict(bn_momentum=bn_momentum, bn_affine=bn_affine)
        self.frames = TdnnStack(inputs_dim, channels, contexts, pad=pad, **bn)
        self.pooling = build_pooling(pooling, self.frames.output_dim, **(pooling_params or {}))
        self.segment1 = ReluBatchNormTdnnLayer(self.pooling.get_output_dim(), embd_dim, context=[0], **bn)
        self.segment2 = ReluBatchNormTdnnLayer(embd_dim, embd_dim, context=[0], **bn)
        self.dropout = torch.nn.Dropout(dropout)
        self.loss = build_loss(loss, embd_dim, num_targets, **(loss_params or {}))
        self.embd_dim = embd_dim

    def compute(self, x):
        hidden, far = self.segment1(self.pooling(self.frames(x)), return_affine=True)
        hidden, near = self.segment2(hidden, return_affine=True)
        return self.dropout(hidden), {"far": far, "near": near}

    def embedding_dims(self):
        return {"far": self.embd_dim, "near": self.embd_dim}
