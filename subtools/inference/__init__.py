"""Use a trained speaker model on any audio: the model package (package.py) written by
subtools/pytorch/pipeline/export_model.py, loaded as :class:`SpeakerModel` (model.py) and driven from the
shell by subtools/speaker.py."""
from subtools.inference.model import SpeakerModel

__all__ = ["SpeakerModel"]
