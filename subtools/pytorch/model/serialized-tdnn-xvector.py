"""Blueprint: TDNN x-vector with serialized multi-layer multi-head attention (Zhu, Lee, Li 2021).

    [B, F, T] -> TDNN frame stack (as the x-vector; `channels`/`contexts`)
              -> SerializedMultiHeadAttentionPooling -> e_L [B, P, 1]  "far" = e_L (the embedding)
              -> ReLU -> BN
              -> segment layer (affine P -> embd_dim, ReLU, BN)   "near" = its affine output
              -> dropout -> loss (softmax | am_softmax | aam_softmax)
This is the layout of the authors' released model (their serialized-tdnn-xvector.py: tdnn1-3 with
zero padding, a 1x1 conv 512 -> 256 without bias = the module's input projection, the serialized
module, ReLU + BatchNorm, tdnn7, softmax): the serialized module's output is the speaker embedding
("far", the only position their extractor allows), followed by one segment layer and the
classifier. With the SPEC §6.1 defaults P = 2 * d_model = 1024; with `pooling.AUTHORS_CONFIG`,
`channels: [512, 512, 512]` (their three TDNN layers) and `pad: true` it is their network, P = 256.
Loaded by path with `load_blueprint(path, "SerializedXvector")`.
"""

import torch

from subtools.pytorch.libs.nnet.components import ReluBatchNormTdnnLayer, TdnnStack
from subtools.pytorch.libs.nnet.framework import SpeakerEmbeddingModel
from subtools.pytorch.libs.nnet.loss import build_loss
from subtools.pytorch.libs.nnet.pooling import SerializedMultiHeadAttentionPooling


class SerializedXvector(SpeakerEmbeddingModel):
    """TDNN frame stack + serialized attention.

    Args:
        inputs_dim: acoustic feature dim F; num_targets: speakers C.
        channels, contexts: frame stack (default the x-vector's five layers).
        pad: zero-pad the TDNN layers, T frames in -> T out (the authors; false drops the edges).
        pooling_params: kwargs of SerializedMultiHeadAttentionPooling (d_model, num_layers,
            num_heads, d_ff, dropout, stats, combine, refine, att_dim, value_proj, out_dim,
            pre_norm, pool_dropout, layer_norm_eps).
        embd_dim: width of the segment layer after the embedding (512).
        loss, loss_params, dropout, bn_momentum, bn_affine: as in Xvector.
    """

    def __init__(self, inputs_dim, num_targets, channels=(512, 512, 512, 512, 1500), contexts=None,
                 pad=False, pooling_params=None, embd_dim=512, loss="softmax", loss_params=None,
                 dropout=0.0, bn_momentum=0.5, bn_affine=False):
        super().__init__()
        bn = dict(bn_momentum=bn_momentum, bn_affine=bn_affine)
        self.frames = TdnnStack(inputs_dim, channels, contexts, pad=pad, **bn)
        self.pooling = SerializedMultiHeadAttentionPooling(self.frames.output_dim, **(pooling_params or {}))
        pooled_dim = self.pooling.get_output_dim()
        self.pooled_norm = torch.nn.BatchNorm1d(pooled_dim, momentum=bn_momentum, affine=bn_affine)
        self.segment = ReluBatchNormTdnnLayer(pooled_dim, embd_dim, context=[0], **bn)
        self.dropout = torch.nn.Dropout(dropout)
        self.loss = build_loss(loss, embd_dim, num_targets, **(loss_params or {}))
        self.pooled_dim, self.embd_dim = pooled_dim, embd_dim

    def compute(self, x):
        far = self.pooling(self.frames(x))
        hidden, near = self.segment(self.pooled_norm(torch.relu(far)), return_affine=True)
        return self.dropout(hidden), {"far": far, "near": near}

    def embedding_dims(self):
        return {"far": self.pooled_dim, "near": self.embd_dim}
