"""Kaldi data directories: load/save, validate, fix, subset, split, combine, filter, removeUtt.

The package splits along the concepts: :mod:`.tables` (table names, utt2spk/spk2utt), :mod:`.directory`
(the :class:`DataDir` object), :mod:`.check` (validate, fix) and :mod:`.ops` (subset, filter, split,
combine, removeUtt); everything is importable from ``subtools.kaldi.data_dir``.

A data dir holds Kaldi tables keyed by utterance (:data:`UTT_TABLES`: ``wav.scp utt2spk feats.scp
vad.scp utt2num_frames utt2dur text utt2lang utt2uniq utt2warp utt2gender utt2room``) or by speaker
(``spk2utt`` and :data:`SPK_TABLES`: ``spk2gender spk2warp spk2accent``), plus an optional ``trials/``
sub-directory of Kaldi trials files (``enroll test target|nontarget``), which every operation writing a
new dir copies unchanged (but split: job parts need no trials). As in Kaldi's fix_data_dir.sh, only these
names are tables; any other file (``utt2spk_orig``, notes) is left alone unless named as an extra table
(``fix --extra-files``: names ``utt2*`` or ``*.scp`` are keyed by utterance, ``spk2*`` by speaker). Keys
are kept in C (byte) order, which is Python's ``sorted`` order for str keys.

Semantics follow Kaldi's ``utils/`` scripts:
- ``validate_dir`` ~ ``validate_data_dir.sh --no-text``: every table sorted with unique keys, all
  utterance tables with the same key set as utt2spk, spk2utt consistent with utt2spk, speaker
  tables keyed by known speakers, and utt2spk sorted the same way by utterance and by speaker
  (utterance ids start with the speaker id, so a split by speaker is contiguous);
- ``fix_dir`` ~ ``fix_data_dir.sh``: copies the dir's files to ``DIR/.backup/`` first, sorts, drops
  duplicate keys (keeping the first), keeps the utterances present in every utterance table, drops
  speakers left without utterances, and reports exactly what it dropped;
- ``remove_utt`` ~ ASV-subtools ``removeUtt.sh``: drops utterances with fewer than ``min_frames``
  frames, then speakers left with fewer than ``min_utts`` utterances.
Kaldi ``segments`` files are not supported (VoxCeleb/SITW do not use them): a dir with one is
reported as a problem.
"""
from subtools.kaldi.data_dir.check import FixReport, backup_dir, fix_dir, validate_dir
from subtools.kaldi.data_dir.directory import DataDir
from subtools.kaldi.data_dir.ops import combine_dirs, filter_dir, partition, remove_utt, split_dir, subset_dir
from subtools.kaldi.data_dir.tables import (BACKUP_DIR, SPK_TABLES, TRIALS_DIR, UTT_FILES, UTT_TABLES,
                                            check_extra_tables, is_spk_table, is_utt_table, read_sorted_table,
                                            read_spk2utt, spk2utt_to_utt2spk, table_names, utt2spk_to_spk2utt,
                                            write_spk2utt)

__all__ = ["BACKUP_DIR", "DataDir", "FixReport", "SPK_TABLES", "TRIALS_DIR", "UTT_FILES", "UTT_TABLES", "backup_dir",
           "check_extra_tables", "combine_dirs", "filter_dir", "fix_dir", "is_spk_table", "is_utt_table", "partition",
           "read_sorted_table", "read_spk2utt", "remove_utt", "spk2utt_to_utt2spk", "split_dir", "subset_dir",
           "table_names", "utt2spk_to_spk2utt", "validate_dir", "write_spk2utt"]
