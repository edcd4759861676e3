"""Helpers shared by the corpus builders: per-item random streams and atomic 16-bit wav output."""
import hashlib
import os

import numpy as np
import soundfile as sf

from recipe.mini.local.signals import to_int16
from subtools.kaldi.fileio import atomic_write


def rng_for(seed, *keys):
    """A numpy Generator determined by ``seed`` and the string ``keys`` only (not by the order in
    which items are built), e.g. ``rng_for(seed, "utt", utt_id)``."""
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def write_wav(path, wave, sample_rate):
    """Write float ``wave`` [N] (full scale 1.0) as a 16-bit mono wav, atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path, "wb") as f:
        sf.write(f, to_int16(wave), sample_rate, format="WAV", subtype="PCM_16")
