"""Synthetic speaker features for smoke tests and benchmarks (no audio needed).

``make_feature_dir(DATA, ...)`` writes a Kaldi data dir whose features are Gaussian frames around a
random per-speaker mean (so speakers are learnable): ``utt2spk``, ``spk2utt``, ``feats.scp`` +
``feats.ark`` (uncompressed float32), ``utt2num_frames`` and ``vad.scp`` + ``vad.ark`` (1 everywhere
except a few unvoiced frames at the start of each utterance). Utterance ids are ``<spk>-uNNN``.
"""
import os

import kaldiio
import numpy as np

from subtools.kaldi.data_dir import utt2spk_to_spk2utt, write_spk2utt
from subtools.kaldi.fileio import write_table


def make_feature_dir(data_dir, num_spks=8, utts_per_spk=6, num_frames=(250, 400), dim=24, separation=1.0,
                     unvoiced=5, seed=0):
    """Write the data dir; ``num_frames`` is an inclusive (min, max) range. Returns {utt: [T, F] array}."""
    rng = np.random.default_rng(seed)
    os.makedirs(data_dir, exist_ok=True)
    utt2spk, feats = {}, {}
    for s in range(num_spks):
        spk = f"spk{s:03d}"
        mean = separation * rng.standard_normal(dim)
        for u in range(utts_per_spk):
            utt = f"{spk}-u{u:03d}"
            length = int(rng.integers(num_frames[0], num_frames[1] + 1))
            utt2spk[utt] = spk
            feats[utt] = (mean + rng.standard_normal((length, dim))).astype(np.float32)
    ark, scp = os.path.join(data_dir, "feats.ark"), os.path.join(data_dir, "feats.scp")
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for utt in sorted(feats):
            writer(utt, feats[utt])
    vad_ark, vad_scp = os.path.join(data_dir, "vad.ark"), os.path.join(data_dir, "vad.scp")
    with kaldiio.WriteHelper(f"ark,scp:{vad_ark},{vad_scp}") as writer:
        for utt in sorted(feats):
            vad = np.ones(len(feats[utt]), dtype=np.float32)
            vad[:unvoiced] = 0.0
            writer(utt, vad)
    write_table(os.path.join(data_dir, "utt2spk"), utt2spk)
    write_spk2utt(os.path.join(data_dir, "spk2utt"), utt2spk_to_spk2utt(utt2spk))
    write_table(os.path.join(data_dir, "utt2num_frames"), {u: len(f) for u, f in feats.items()})
    return feats
