"""SpecAugment frequency and time masking (Park et al., 2019) for one feature chunk.

yaml (``egs.specaug``; null disables)::

    specaug: {freq_masks: 1, freq_width: 8, time_masks: 1, time_width: 20, prob: 1.0}

Each mask has a width drawn uniformly from ``0..width`` and a uniform position; masked cells are set to
0 (the features are mean-normalised, so 0 is the mean). ``prob`` is the chance to augment a chunk.
"""
import numpy as np


class SpecAugment:
    def __init__(self, freq_masks=1, freq_width=8, time_masks=1, time_width=20, prob=1.0):
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.prob = float(prob)

    @staticmethod
    def _mask(axis_len, max_width, rng):
        width = int(rng.integers(0, min(max_width, axis_len) + 1))
        start = int(rng.integers(0, axis_len - width + 1))
        return slice(start, start + width)

    def __call__(self, feats, rng: np.random.Generator):
        """Mask ``feats: [T, F]`` in place with draws from ``rng``; returns ``feats``."""
        if rng.random() >= self.prob:
            return feats
        num_frames, dim = feats.shape
        for _ in range(self.freq_masks):
            feats[:, self._mask(dim, self.freq_width, rng)] = 0.0
        for _ in range(self.time_masks):
            feats[self._mask(num_frames, self.time_width, rng), :] = 0.0
        return feats
