"""Blueprints loaded by path: forward/backward, embeddings, model info, margin step, overfitting."""

import pytest
import torch

from subtools.pytorch.libs.nnet.framework import load_blueprint
from subtools.pytorch.libs.nnet.pooling import AUTHORS_CONFIG

torch.set_num_threads(1)
XVECTOR = "subtools/pytorch/model/xvector.py"
SERIALIZED = "subtools/pytorch/model/serialized-tdnn-xvector.py"
SMALL = dict(channels=[32, 32, 32, 32, 48], embd_dim=24)
SMALL_SERIALIZED = dict(d_model=32, num_layers=2, num_heads=4, d_ff=48)

CASES = [
    (XVECTOR, "Xvector", dict(SMALL, pooling="stats")),
    (XVECTOR, "Xvector", dict(SMALL, pooling="attentive", loss="am_softmax")),
    (XVECTOR, "Xvector", dict(SMALL, pooling="multihead", pooling_params={"num_heads": 4}, dropout=0.2)),
    (XVECTOR, "Xvector", dict(SMALL, pooling="serialized", pooling_params=SMALL_SERIALIZED)),
    (SERIALIZED, "SerializedXvector", dict(SMALL, pooling_params=SMALL_SERIALIZED,
                                           loss="aam_softmax", loss_params={"warmup_epochs": 1.0})),
    (SERIALIZED, "SerializedXvector", dict(SMALL, channels=[32, 32, 32],
                                           pooling_params=dict(AUTHORS_CONFIG, d_model=32, d_ff=64, att_dim=16,
                                                               out_dim=32, num_layers=3))),
    (XVECTOR, "Xvector", dict(SMALL, pad=True, pooling="attentive",
                              pooling_params={"affine_layers": 1, "context": [-1, 0, 1]})),
    (SERIALIZED, "SerializedXvector", dict(SMALL, channels=[32, 32, 32], pad=True,
                                           pooling_params=dict(AUTHORS_CONFIG, d_model=32, d_ff=64, att_dim=16,
                                                               out_dim=32, num_layers=2))),
]


@pytest.mark.parametrize("path,cls,params", CASES)
def test_blueprint_forward_backward_embeddings(path, cls, params):
    torch.manual_seed(0)
    model = load_blueprint(path, cls)(20, 7, **params)
    x = torch.randn(4, 20, 37)
    targets = torch.tensor([0, 3, 6, 3])
    outputs = model(x)
    assert outputs.shape == (4, params["embd_dim"], 1)
    loss, logits = model.get_loss(outputs, targets)
    assert loss.dim() == 0 and logits.shape == (4, 7)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    model.step(0.5)
    info = model.get_model_info()
    assert info["num_params"] == sum(p.numel() for p in model.parameters())
    assert info["num_params_without_loss"] < info["num_params"]
    model.eval()
    with torch.no_grad():
        for position, dim in info["embedding_dims"].items():
            emb = model.extract_embedding(x, position=position)
            assert emb.shape == (4, dim)
            # eval mode: one utterance alone (any length) gives the same vector as inside a batch
            alone = model.extract_embedding(x[2:3], position=position)
            assert torch.allclose(alone[0], emb[2], atol=1e-5)
        # the shortest input: 1 frame with padded TDNN layers, else one more than the contexts consume
        shortest = model.min_frames()
        assert shortest == (1 if params.get("pad") else 15) and info["min_frames"] == shortest
        assert model.extract_embedding(x[:1, :, :shortest]).shape[0] == 1
        if shortest > 1:
            with pytest.raises(ValueError, match="shorter"):
                model.extract_embedding(x[:1, :, :shortest - 1])
        with pytest.raises(ValueError, match="position"):
            model.extract_embedding(x, position="middle")


def test_far_near_positions():
    torch.manual_seed(1)
    model = load_blueprint(XVECTOR, "Xvector")(20, 5, **SMALL).eval()
    x = torch.randn(2, 20, 30)
    with torch.no_grad():
        pooled = model.pooling(model.frames(x))
        far = model.segment1.affine(pooled)
        near = model.segment2.affine(model.segment1(pooled))
        assert torch.allclose(model.extract_embedding(x, "far"), far[:, :, 0], atol=1e-6)
        assert torch.allclose(model.extract_embedding(x, "near"), near[:, :, 0], atol=1e-6)
    serialized = load_blueprint(SERIALIZED, "SerializedXvector")(20, 5, pooling_params=SMALL_SERIALIZED, **SMALL).eval()
    with torch.no_grad():
        e = serialized.pooling(serialized.frames(x))[:, :, 0]
        assert torch.allclose(serialized.extract_embedding(x, "far"), e, atol=1e-6)
        assert serialized.extract_embedding(x, "far").shape[1] == 2 * SMALL_SERIALIZED["d_model"]


def test_margin_warmup_through_model_step():
    model = load_blueprint(SERIALIZED, "SerializedXvector")(
        20, 5, pooling_params=SMALL_SERIALIZED, loss="am_softmax", loss_params={"m": 0.3, "warmup_epochs": 4}, **SMALL)
    model.step(1.0)
    assert model.loss.m == pytest.approx(0.075)
    model.step(10.0)
    assert model.loss.m == pytest.approx(0.3)


def test_load_blueprint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_blueprint(tmp_path / "missing-model.py", "Xvector")
    with pytest.raises(AttributeError, match="NoSuchModel"):
        load_blueprint(XVECTOR, "NoSuchModel")


@pytest.mark.parametrize("path,cls,params", [CASES[0], CASES[4]])
def test_small_model_overfits_a_batch(path, cls, params):
    """A few Adam steps on 8 fixed chunks of 4 speakers: training accuracy reaches 100 %."""
    torch.manual_seed(2)
    model = load_blueprint(path, cls)(20, 4, **params)
    x = torch.randn(8, 20, 30)
    targets = torch.arange(8) % 4
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for it in range(60):
        model.step(it / 30)
        loss, logits = model.get_loss(model(x), targets)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
    assert (logits.argmax(1) == targets).float().mean() == 1.0
