"""Sliding CMN then voiced-frame selection of one utterance (Kaldi ``apply-cmvn-sliding
--norm-vars=false --center=true | select-voiced-frames``), as a job worker for
:func:`subtools.kaldi.ark_jobs.run_jobs`: used by make_nosil.py (training data, stage 0) and by the
embedding extraction (test data, stage 4).
"""
import kaldiio

from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.vad import select_voiced


def nosil_item(feats_entry, vad_entry):
    """The job value of an utterance: its feats.scp and vad.scp entries, tab-separated."""
    return f"{feats_entry}\t{vad_entry}"


class NosilWorker:
    """(utt, :func:`nosil_item`) -> CMN'd voiced frames ``[T_voiced, F]``; ValueError (the reason, the
    caller lists it beside the utterance) for 0 voiced frames or a VAD/feature length mismatch."""

    def __init__(self, cmn_window):
        self.cmn_window = cmn_window

    def __call__(self, utt, value):
        feats_entry, vad_entry = value.split("\t")
        feats = kaldiio.load_mat(feats_entry)
        voiced = select_voiced(sliding_cmn(feats, self.cmn_window, center=True), kaldiio.load_mat(vad_entry))
        if voiced.shape[0] == 0:
            raise ValueError(f"0 voiced frames (of {feats.shape[0]})")
        return voiced
