"""The view of a Kaldi data dir that egs generation needs: utterances, speakers, feature lengths.

``KaldiDataset.load(DATA)`` reads ``utt2spk``, ``feats.scp`` and ``utt2num_frames`` (the latter is
computed from the ark headers when absent). Speaker labels ``spk2int`` are 0..S-1 in C-sorted speaker
order over the whole data dir, so the validation split keeps the same labels as training.
"""
import os

import numpy as np

from subtools.kaldi.data_dir import utt2spk_to_spk2utt
from subtools.kaldi.fileio import read_table
from subtools.pytorch.libs.support.kaldi_io import read_header


class KaldiDataset:
    """Tables of one data dir. Attributes: ``utt2spk``, ``feats_scp``, ``utt2num_frames`` (dicts keyed by
    utterance), ``spk2utt`` (speaker -> sorted utterance list), ``spk2int`` (speaker -> class label)."""

    def __init__(self, utt2spk, feats_scp, utt2num_frames, spk2int=None):
        self.utt2spk = dict(sorted(utt2spk.items()))
        self.feats_scp = feats_scp
        self.utt2num_frames = utt2num_frames
        self.spk2utt = utt2spk_to_spk2utt(self.utt2spk)
        self.spk2int = spk2int if spk2int is not None else {s: i for i, s in enumerate(self.spk2utt)}

    @classmethod
    def load(cls, data_dir):
        """Read a data dir; ValueError naming the file if an utterance lacks features or a length."""
        utt2spk = read_table(os.path.join(data_dir, "utt2spk"))
        feats_path = os.path.join(data_dir, "feats.scp")
        feats_scp = read_table(feats_path)
        missing = [u for u in utt2spk if u not in feats_scp]
        if missing:
            raise ValueError(f"{feats_path}: no features for {len(missing)} utterances of utt2spk, "
                             f"e.g. '{missing[0]}' (run the data-dir fix tool)")
        n_path = os.path.join(data_dir, "utt2num_frames")
        if os.path.exists(n_path):
            utt2num_frames = {u: int(n) for u, n in read_table(n_path).items()}
        else:
            utt2num_frames = {u: read_header(feats_scp[u])[1] for u in utt2spk}
        missing = [u for u in utt2spk if u not in utt2num_frames]
        if missing:
            raise ValueError(f"{n_path}: no entry for '{missing[0]}' ({len(missing)} missing)")
        return cls(utt2spk, {u: feats_scp[u] for u in utt2spk}, {u: utt2num_frames[u] for u in utt2spk})

    def __len__(self):
        return len(self.utt2spk)

    @property
    def num_spks(self):
        return len(self.spk2int)

    @property
    def num_frames(self):
        return sum(self.utt2num_frames.values())

    @property
    def feat_dim(self):
        return read_header(next(iter(self.feats_scp.values())))[2]

    def subset(self, utts):
        """A dataset of the given utterances that keeps this dataset's ``spk2int``."""
        utts = set(utts)
        return KaldiDataset({u: s for u, s in self.utt2spk.items() if u in utts},
                            {u: self.feats_scp[u] for u in utts},
                            {u: self.utt2num_frames[u] for u in utts}, spk2int=self.spk2int)

    def split_valid(self, num_spks, rng):
        """ASV-subtools ``--total-spk`` split: one random utterance from each of up to ``num_spks`` random
        speakers goes to validation. Only speakers with >= 2 utterances are eligible, so every
        validation speaker keeps training data. Returns ``(train, valid)``."""
        eligible = [s for s, utts in self.spk2utt.items() if len(utts) >= 2]
        if num_spks <= 0 or not eligible:
            return self, self.subset([])
        chosen = rng.choice(len(eligible), size=min(num_spks, len(eligible)), replace=False)
        valid = [self.spk2utt[eligible[i]][rng.integers(len(self.spk2utt[eligible[i]]))]
                 for i in np.sort(chosen)]
        valid_set = set(valid)
        return self.subset([u for u in self.utt2spk if u not in valid_set]), self.subset(valid)
