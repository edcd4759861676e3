"""The in-memory Kaldi data dir (:class:`DataDir`): load every table, select utterances, save atomically."""
import dataclasses
import os
import shutil

from subtools.kaldi.data_dir.tables import (TRIALS_DIR, UTT_FILES, format_value, is_spk_table, is_utt_table,
                                            parse_values, read_spk2utt, table_names, utt2spk_to_spk2utt,
                                            write_spk2utt)
from subtools.kaldi.fileio import atomic_write, read_table, write_table


@dataclasses.dataclass
class DataDir:
    """In-memory Kaldi data dir. Absent files are None.

    ``spk2utt`` is {spk: [utt, ...]}; ``utt2num_frames`` values are int, ``utt2dur`` float, every
    other table maps key -> rest of line (str). ``tables`` holds the other utt2*/spk2*/text files
    by file name. ``trials_src`` is the ``trials/`` directory the dir was loaded from (copied on save).
    """

    wav_scp: dict = None
    utt2spk: dict = None
    spk2utt: dict = None
    feats_scp: dict = None
    vad_scp: dict = None
    utt2num_frames: dict = None
    utt2dur: dict = None
    tables: dict = dataclasses.field(default_factory=dict)
    trials_src: str = None

    @classmethod
    def load(cls, path, allow_duplicates=False, extra=()):
        """Read every known table of ``path`` (and the ``extra`` table names). Raises ValueError on
        duplicate keys (naming file:line) unless ``allow_duplicates`` (then the last value wins)."""
        if not os.path.isdir(path):
            raise FileNotFoundError(f"data dir not found: {path}")
        data = cls()
        if os.path.isfile(os.path.join(path, "spk2utt")):
            data.spk2utt = read_spk2utt(os.path.join(path, "spk2utt"), allow_duplicates)
        for name in table_names(path, extra):
            data.set_table(name, parse_values(os.path.join(path, name), read_table(os.path.join(path, name), allow_duplicates)))
        if os.path.isdir(os.path.join(path, TRIALS_DIR)):
            data.trials_src = os.path.join(path, TRIALS_DIR)
        return data

    def utt_tables(self):
        """{file name: table} of the utterance tables present."""
        out = {name: getattr(self, attr) for name, attr in UTT_FILES.items() if getattr(self, attr) is not None}
        out.update({n: t for n, t in self.tables.items() if is_utt_table(n)})
        return out

    def spk_tables(self):
        """{file name: table} of the speaker tables present (spk2utt excluded)."""
        return {n: t for n, t in self.tables.items() if is_spk_table(n)}

    def set_table(self, name, table):
        """Set an utterance or speaker table by file name (None removes it)."""
        if name in UTT_FILES:
            setattr(self, UTT_FILES[name], table)
        elif table is None:
            self.tables.pop(name, None)
        else:
            self.tables[name] = table

    def utts(self):
        """Sorted utterance ids (from utt2spk)."""
        return sorted(self.utt2spk or {})

    def select(self, keep_utts):
        """A new DataDir restricted to ``keep_utts``; spk2utt rebuilt, speaker tables filtered."""
        keep = set(keep_utts)
        out = DataDir(trials_src=self.trials_src)
        for name, table in self.utt_tables().items():
            out.set_table(name, {k: v for k, v in table.items() if k in keep})
        spks = set(out.utt2spk.values()) if out.utt2spk is not None else set()
        for name, table in self.spk_tables().items():
            out.tables[name] = {k: v for k, v in table.items() if k in spks}
        if out.utt2spk is not None:
            out.spk2utt = utt2spk_to_spk2utt(out.utt2spk)
        return out

    def save(self, path):
        """Write every present table (sorted, atomic); spk2utt is regenerated from utt2spk.

        Table files already in ``path`` that this DataDir lacks are removed (they would be stale).
        Also copies the files of the trials/ directory it was loaded from, if any (overwriting those of the
        same name; a trials file ``path`` has that the source lacks stays), unless ``path`` is that directory's
        own data dir.
        """
        os.makedirs(path, exist_ok=True)
        present = {**self.utt_tables(), **self.spk_tables()}
        for name in table_names(path):  # stale tables of an earlier content of ``path``
            if name not in present:
                os.remove(os.path.join(path, name))
        for name, table in present.items():
            write_table(os.path.join(path, name), {k: format_value(v) for k, v in table.items()})
        if self.utt2spk is not None:
            self.spk2utt = utt2spk_to_spk2utt(self.utt2spk)
        if self.spk2utt is not None:
            write_spk2utt(os.path.join(path, "spk2utt"), self.spk2utt)
        if self.trials_src:
            dst = os.path.join(path, TRIALS_DIR)
            if os.path.abspath(dst) != os.path.abspath(self.trials_src):
                copy_trials(self.trials_src, dst)


def copy_file(src, dst):
    """Copy file ``src`` to ``dst`` atomically."""
    with open(src, "rb") as f, atomic_write(dst, "wb") as g:
        shutil.copyfileobj(f, g)


def copy_trials(src, dst):
    """Copy the files of a trials/ dir (each atomically)."""
    for name in sorted(os.listdir(src)):
        if os.path.isfile(os.path.join(src, name)):
            copy_file(os.path.join(src, name), os.path.join(dst, name))
