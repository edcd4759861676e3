"""Model blueprints: loading them by file path, and the base class they share.

A blueprint is a Python file defining one model class (ASV-subtools style); the experiment copies
it into `exp/<model>/config/` and always rebuilds the model from that copy. Blueprint file names
contain '-' (`serialized-tdnn-xvector.py`), so they are loaded by path, not imported by name.

Model interface (what the trainer and the extractor use):
  `Model(inputs_dim, num_targets, **params)`   params = the yaml's `model.params`
  `forward(x [B, F, T]) -> outputs`            the segment-level hidden `[B, D, 1]`
  `get_loss(outputs, targets [B]) -> (loss, logits [B, C])`
  `extract_embedding(x [B, F, T], position="far"|"near") -> [B, E]` (caller sets eval/no_grad)
  `step(epoch_progress)`                       margin warm-up (no-op for softmax)
  `get_model_info() -> dict`                   class, parameter counts, embedding dims, min_frames
  `min_frames()`                               shortest input T accepted (1 with padded TDNN layers)
"""

import hashlib
import importlib.util
import os

import torch


def load_blueprint(path, class_name):
    """Load `class_name` from the Python file `path` (a blueprint) and return the class."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model blueprint not found: {path}")
    # A name unique per file, so that two blueprints (or two copies) never share a module.
    module_name = "blueprint_" + hashlib.sha1(path.encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, class_name):
        raise AttributeError(f"model blueprint {path} defines no class {class_name!r}")
    return getattr(module, class_name)


class SpeakerEmbeddingModel(torch.nn.Module):
    """Base of the x-vector blueprints: frame stack -> pooling -> segment layers -> loss.

    A subclass builds its layers (`self.frames` a `components.TdnnStack`, `self.loss` a loss from
    `loss.py`) and implements
    `compute(x) -> (outputs [B, D, 1], {"far": [B, E, 1], "near": [B, E', 1]})`; this class turns
    that into the model interface, so the two blueprints share everything but their layers.
    """

    def compute(self, x):
        raise NotImplementedError

    def forward(self, x):
        return self.compute(x)[0]

    def get_loss(self, outputs, targets):
        return self.loss(outputs, targets)

    def extract_embedding(self, x, position="far"):
        embeddings = self.compute(x)[1]
        if position not in embeddings:
            raise ValueError(f"embedding position must be one of {sorted(embeddings)}, got {position!r}")
        return embeddings[position].squeeze(2)

    def step(self, epoch_progress):
        self.loss.step(epoch_progress)

    def embedding_dims(self):
        """{"far": E, "near": E'} (subclasses know their layer sizes)."""
        raise NotImplementedError

    def min_frames(self):
        """Shortest input `T` the model accepts: 1 with zero-padded TDNN layers (`pad: true`), else one
        more than the frames the contexts consume (15 with the x-vector contexts)."""
        return self.frames.frames_lost + 1

    def get_model_info(self):
        total = sum(p.numel() for p in self.parameters())
        in_loss = sum(p.numel() for p in self.loss.parameters())
        return {
            "class": type(self).__name__,
            "num_params": total,
            "num_params_without_loss": total - in_loss,
            "trainable_params": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "embedding_dims": self.embedding_dims(),
            "min_frames": self.min_frames(),
        }
