"""The embedding network of a model package in three runtimes, and its TorchScript / ONNX export.

Every runtime offers what :func:`subtools.pytorch.pipeline.extract_embeddings.embed_utterance` calls on a
model, ``min_frames()`` and ``extract_embedding(x [1, F, T], position) -> [1, E]``, so the recipe's
extraction (chunking of long utterances, repetition of short ones) runs unchanged on each:

* ``torch``: the blueprint's model (built from the project's own file, see checkpoint.trusted_blueprint)
  with the package's weights;
* ``torchscript``: ``network.ts``, the model traced from features to embedding;
* ``onnx``: ``network.onnx`` run by onnxruntime.

The exported graphs take ``feats [1, F, T]`` (CMN'd voiced frames, T dynamic) and return
``embedding [1, E]`` at the position chosen at export. TorchScript is made by torch.jit.trace (one
path through the model, recorded on a 200-frame input), ONNX by torch.export (``dynamo=True``: the number
of frames stays symbolic; torch 2.11's TorchScript-based exporter froze the frame count of
nn.MultiheadAttention's reshapes, so the SPEC-reading serialized pooling failed at other lengths).
:func:`check_runtimes` compares both with the eager model at several lengths before a package is
written.
"""
import contextlib
import logging
import warnings

import numpy as np
import torch

RUNTIMES = ("torch", "torchscript", "onnx")
ONNX_OPSET = 18
INPUT, OUTPUT = "feats", "embedding"


class EmbeddingNetwork(torch.nn.Module):
    """``feats [B, F, T] -> embedding [B, E]`` of ``model`` at ``position`` (the graph that is exported)."""

    def __init__(self, model, position):
        super().__init__()
        self.model, self.position = model, position

    def forward(self, feats):
        return self.model.extract_embedding(feats, position=self.position)


@contextlib.contextmanager
def tracing():
    """No gradients, no tracer/deprecation warnings, and PyTorch's fused attention "fast path" off
    (``aten::_transformer_encoder_layer_fwd`` has no ONNX form; the plain layers compute the same)."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # input checks become constants: fine
            warnings.simplefilter("ignore", DeprecationWarning)      # torch 2.11 deprecates TorchScript
            warnings.simplefilter("ignore", FutureWarning)           # torch.export's own internals
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def export_torchscript(network, feat_dim, path, frames=200):
    """Trace ``network`` (an eval-mode EmbeddingNetwork) on a ``[1, feat_dim, frames]`` input and save it."""
    example = torch.randn(1, feat_dim, frames, generator=torch.Generator().manual_seed(0))
    with tracing():
        traced = torch.jit.trace(network, (example,))
    traced.save(path)


def export_onnx(network, feat_dim, path, frames=200):
    """Export ``network`` to ONNX (opset 18) with a dynamic number of frames (at least the model's
    ``min_frames()``), by torch.export (``dynamo=True``, onnxscript)."""
    example = torch.randn(1, feat_dim, frames, generator=torch.Generator().manual_seed(0))
    frames_dim = torch.export.Dim("frames", min=network.model.min_frames())
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)   # "torchvision is not installed" notices
    try:
        with tracing():
            torch.onnx.export(network, (example,), path, dynamo=True, verbose=False, opset_version=ONNX_OPSET,
                              input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=({2: frames_dim},),
                              external_data=False)   # one file, weights inside
    finally:
        exporter_log.setLevel(level)


class _ExportedNetwork:
    """Base of the exported runtimes: the position is fixed in the graph; ``min_frames`` from the package."""

    def __init__(self, min_frames, position):
        self._min_frames, self.position = int(min_frames), position

    def min_frames(self):
        return self._min_frames

    def extract_embedding(self, x, position="far"):
        if position != self.position:
            raise ValueError(f"this network was exported at position {self.position!r}, not {position!r}")
        return self.run(x)


class TorchScriptNetwork(_ExportedNetwork):
    def __init__(self, path, min_frames, position):
        super().__init__(min_frames, position)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(path, map_location="cpu").eval()

    def run(self, x):
        with torch.no_grad():
            return self.module(x)


class OnnxNetwork(_ExportedNetwork):
    def __init__(self, path, min_frames, position, threads=None):
        import onnxruntime

        super().__init__(min_frames, position)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(self, x):
        feats = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: feats})[0])


def max_difference(model, runtime, position, feat_dim, lengths, seed=0):
    """Largest ``|runtime - model|`` of the embeddings of random ``[1, feat_dim, T]`` inputs, T in
    ``lengths``, relative to the largest value of the eager ``model``'s (floor 1)."""
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for frames in lengths:
            x = torch.randn(1, feat_dim, frames, generator=gen)
            ref = model.extract_embedding(x, position).double()
            got = runtime.extract_embedding(x, position).double()
            worst = max(worst, float((got - ref).abs().max()) / max(1.0, float(ref.abs().max())))
    return worst


def check_runtimes(model, runtimes, position, feat_dim, lengths=(1, 37, 200, 1111), tolerance=1e-4):
    """ValueError unless every ``{name: runtime}`` gives the eager ``model``'s embeddings within
    ``tolerance`` (relative to the embedding scale) at each of ``lengths`` frames (raised to the model's
    ``min_frames``); returns ``{name: difference}``."""
    lengths = sorted({max(n, model.min_frames()) for n in lengths})
    differences = {}
    for name, runtime in runtimes.items():
        differences[name] = max_difference(model, runtime, position, feat_dim, lengths)
        if not differences[name] <= tolerance:
            raise ValueError(f"the {name} network differs from the PyTorch model by {differences[name]:.3g} "
                             f"(relative; tolerance {tolerance:g}) on {lengths} frames: the traced graph does not "
                             "follow this model")
    return differences
