"""Waveform -> the frames an embedding network sees, exactly as the recipe makes them.

The recipe's path for an utterance is make_features.py (Kaldi fbank / MFCC / MFCC + pitch from the data
dir's ``conf/``), compute_vad.py (Kaldi energy VAD on the log-energy column of the features, or the raw
log-energy of the audio when the features have none), then the extraction's sliding CMN (centred window
``stage0.cmn_window``) and voiced-frame selection. :class:`Frontend` runs the same functions on one
waveform in memory, with the options a model package recorded (its ``conf/`` mirrors a data dir's).

With ``--dither`` > 0 in the feature conf (Kaldi's default, the authors' MFCC conf) features are random;
here the dither noise is drawn from a fixed seed, so one input always gives one embedding.
"""
import os

import numpy as np
import torch

from subtools.compute_vad import data_extractor
from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.vad import compute_vad, read_vad_conf, select_voiced

VAD_CONF = "vad.conf"


class Frontend:
    """``(wave float32 [N] int16 scale, name)`` -> CMN'd voiced features float32 ``[T_voiced, F]``.

    Attributes: ``extractor`` (:class:`~subtools.kaldi.features.FeatureExtractor`), ``vad_options``
    (keyword arguments of :func:`~subtools.kaldi.vad.compute_vad`), ``cmn_window`` (frames)."""

    def __init__(self, extractor, vad_options, cmn_window):
        self.extractor, self.vad_options, self.cmn_window = extractor, dict(vad_options), int(cmn_window)

    @classmethod
    def from_dir(cls, directory, cmn_window, vad_fix_context=False):
        """The options of ``directory/conf/`` (``feat_type``, ``feats.conf``, the pitch confs of mfcc_pitch and
        ``vad.conf``), as a data dir records them after make_features.py; ValueError naming a bad line."""
        vad = dict(read_vad_conf(os.path.join(directory, "conf", VAD_CONF)), fix_context=vad_fix_context)
        return cls(data_extractor(directory), vad, cmn_window)

    @property
    def sample_rate(self):
        return self.extractor.sample_rate

    @property
    def channel(self):
        return self.extractor.channel

    @property
    def dim(self):
        return self.extractor.dim

    def features(self, wave):
        """Raw features ``[T, F]`` (the recipe's feats.scp entry); dither drawn from seed 0."""
        if self.extractor.options["dither"] == 0.0:
            return self.extractor(wave)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return self.extractor(wave)

    def vad(self, wave, feats):
        """0/1 decisions ``[T]`` (the recipe's vad.scp entry)."""
        column = self.extractor.energy_column()
        energy = feats[:, column] if column is not None else self.extractor.frame_log_energy(wave)
        return compute_vad(energy, **self.vad_options)

    def __call__(self, wave, name):
        feats = self.features(wave)
        if feats.shape[0] == 0:
            raise ValueError(f"{name}: {len(wave)} samples ({len(wave) / self.sample_rate:.3f} s) give no feature "
                             "frame (too short)")
        voiced = select_voiced(sliding_cmn(feats, self.cmn_window, center=True), self.vad(wave, feats))
        if voiced.shape[0] == 0:
            raise ValueError(f"{name}: no voiced frame (the energy VAD found only silence in {feats.shape[0]} "
                             "frames)")
        return voiced.astype(np.float32)
