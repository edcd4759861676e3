"""Checking and repairing a data dir: :func:`validate_dir` (Kaldi validate_data_dir.sh --no-text) and
:func:`fix_dir` (fix_data_dir.sh, with the backup in ``DIR/.backup/``)."""
import dataclasses
import os

from subtools.kaldi.data_dir.directory import DataDir, copy_file
from subtools.kaldi.data_dir.tables import (BACKUP_DIR, check_extra_tables, is_utt_table, parse_values,
                                            read_spk2utt, spk2utt_to_utt2spk, table_names)
from subtools.kaldi.fileio import text_lines


def _list_some(keys, n=5):
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return " ".join(keys[:n]) + more


def _file_problems(path, name):
    """Sorted order, duplicate keys and empty values of one table file."""
    problems, prev, seen = [], None, set()
    try:
        for lineno, line in text_lines(os.path.join(path, name)):
            parts = line.split(None, 1)
            if not parts:
                problems.append(f"{name}:{lineno}: empty line")
                continue
            key = parts[0]
            if key in seen:
                problems.append(f"{name}:{lineno}: duplicate key '{key}'")
            elif prev is not None and key < prev:
                problems.append(f"{name}:{lineno}: key '{key}' not in sorted (C locale) order after '{prev}'")
            if len(parts) < 2 or not parts[1].strip():
                problems.append(f"{name}:{lineno}: key '{key}' has no value")
            seen.add(key)
            prev = key
    except ValueError as e:
        problems.append(str(e))
    return problems


def validate_dir(path):
    """Return the list of problems of data dir ``path`` (empty list: the dir is valid)."""
    if not os.path.isdir(path):
        return [f"not a directory: {path}"]
    names = sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
    problems = []
    if "segments" in names:
        problems.append("segments: Kaldi segments files are not supported by this toolkit")
    if "utt2spk" not in names:
        return problems + ["utt2spk: missing (required)"]
    if os.path.getsize(os.path.join(path, "utt2spk")) == 0:
        return problems + ["utt2spk: empty (the data dir has no utterance)"]
    if "wav.scp" not in names and "feats.scp" not in names:
        problems.append("neither wav.scp nor feats.scp present (one is required)")
    tables = (["spk2utt"] if "spk2utt" in names else []) + table_names(path)
    for name in tables:
        problems += _file_problems(path, name)
    if problems:
        return problems  # key-set checks below assume well-formed files
    data = DataDir.load(path)
    utts = set(data.utt2spk)
    for name, table in data.utt_tables().items():
        missing, extra = utts - set(table), set(table) - utts
        if missing:
            problems.append(f"{name}: {len(missing)} utterances of utt2spk missing: {_list_some(missing)}")
        if extra:
            problems.append(f"{name}: {len(extra)} utterances not in utt2spk: {_list_some(extra)}")
    for name, table in (("utt2num_frames", data.utt2num_frames), ("utt2dur", data.utt2dur)):
        bad = [k for k, v in (table or {}).items() if not v > 0]
        if bad:
            problems.append(f"{name}: {len(bad)} non-positive values: {_list_some(bad)}")
    if data.spk2utt is None:
        problems.append("spk2utt: missing (run: python3 subtools/data_dir.py spk2utt DIR)")
    else:
        try:
            derived = spk2utt_to_utt2spk(data.spk2utt)
        except ValueError as e:
            derived = None
            problems.append(f"spk2utt: {e}")
        if derived is not None and derived != data.utt2spk:
            diff = {u for u in set(derived) | utts if derived.get(u) != data.utt2spk.get(u)}
            problems.append(f"spk2utt: inconsistent with utt2spk for {len(diff)} utterances: {_list_some(diff)}")
        unsorted = [s for s, us in data.spk2utt.items() if us != sorted(us)]
        if unsorted:
            problems.append(f"spk2utt: utterance lists not sorted for speakers: {_list_some(unsorted)}")
    by_spk = sorted(data.utt2spk, key=lambda u: (data.utt2spk[u], u))
    if by_spk != sorted(data.utt2spk):
        bad = [u for u, v in zip(sorted(data.utt2spk), by_spk) if u != v]
        problems.append(
            "utt2spk: sorting by speaker and by utterance disagree (utterance ids should start with "
            f"the speaker id): {_list_some(bad)}"
        )
    spks = set(data.utt2spk.values())
    for name, table in data.spk_tables().items():
        extra = set(table) - spks
        if extra:
            problems.append(f"{name}: {len(extra)} speakers not in utt2spk: {_list_some(extra)}")
    return problems


@dataclasses.dataclass
class FixReport:
    """What ``fix_dir`` changed. ``dropped_utts`` {utt: reason}, ``dropped_spks`` {spk: reason},
    ``duplicates`` ["file:line key"], ``resorted`` [file names that were not sorted]."""

    dropped_utts: dict = dataclasses.field(default_factory=dict)
    dropped_spks: dict = dataclasses.field(default_factory=dict)
    duplicates: list = dataclasses.field(default_factory=list)
    resorted: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [
            f"fix: {len(self.dropped_utts)} utterances dropped, {len(self.dropped_spks)} speakers dropped, "
            f"{len(self.duplicates)} duplicate lines removed, {len(self.resorted)} files re-sorted"
        ]
        lines += [f"  duplicate (first kept): {d}" for d in self.duplicates]
        lines += [f"  re-sorted: {n}" for n in self.resorted]
        lines += [f"  dropped utterance {u}: {r}" for u, r in sorted(self.dropped_utts.items())]
        lines += [f"  dropped speaker {s}: {r}" for s, r in sorted(self.dropped_spks.items())]
        return "\n".join(lines)


def _read_first(path, name, report):
    """Read a table keeping the first of duplicate keys; note duplicates and unsorted order."""
    table, prev, unsorted = {}, None, False
    for lineno, line in text_lines(os.path.join(path, name)):
        parts = line.rstrip("\n").split(None, 1)
        if not parts:
            continue
        key = parts[0]
        if key in table:
            report.duplicates.append(f"{name}:{lineno} {key}")
            continue
        unsorted |= prev is not None and key < prev
        prev = key
        table[key] = parts[1].strip() if len(parts) > 1 else ""
    if unsorted:
        report.resorted.append(name)
    return table


def backup_dir(path):
    """Copy the files of data dir ``path`` (not its sub-directories) into ``path/.backup/``, as Kaldi's
    fix_data_dir.sh does before changing anything."""
    backup = os.path.join(path, BACKUP_DIR)
    for name in sorted(os.listdir(path)):
        if os.path.isfile(os.path.join(path, name)) and not name.startswith("."):
            copy_file(os.path.join(path, name), os.path.join(backup, name))
    return backup


def fix_dir(path, extra_files=()):
    """Make ``path`` consistent in place (Kaldi fix_data_dir.sh) and return a FixReport.

    Backs the dir's files up into ``path/.backup/`` first. Keeps the utterances present, with a non-empty
    value, in utt2spk and every other table (the known tables and ``extra_files``; other files are left
    alone); speakers left without utterances are dropped from the speaker tables; spk2utt is
    regenerated from utt2spk (a spk2utt disagreeing with utt2spk is overridden, not trusted).
    """
    check_extra_tables(extra_files)
    if not os.path.isfile(os.path.join(path, "utt2spk")):
        raise FileNotFoundError(f"{path}/utt2spk: missing, cannot fix")
    backup_dir(path)
    report = FixReport()
    data = DataDir(trials_src=None)
    for name in table_names(path, extra_files):
        table = _read_first(path, name, report)
        empty = [k for k, v in table.items() if not v]
        for k in empty:
            del table[k]
            if is_utt_table(name):
                report.dropped_utts.setdefault(k, f"empty value in {name}")
        data.set_table(name, parse_values(os.path.join(path, name), table))
    utt_tables = data.utt_tables()
    all_utts = set().union(*(set(t) for t in utt_tables.values()))
    for utt in sorted(all_utts):
        absent = [n for n, t in utt_tables.items() if utt not in t]
        if absent:
            report.dropped_utts.setdefault(utt, "missing from " + ", ".join(absent))
    keep = [u for u in data.utt2spk if u not in report.dropped_utts]
    spks_before = set(data.utt2spk.values()) | set().union(*(set(t) for t in data.spk_tables().values()))
    fixed = data.select(keep)
    spks_after = set(fixed.utt2spk.values())
    for spk in sorted(spks_before - spks_after):
        report.dropped_spks[spk] = "no utterances left"
    if os.path.isfile(os.path.join(path, "spk2utt")):
        if read_spk2utt(os.path.join(path, "spk2utt"), allow_duplicates=True) != fixed.spk2utt:
            report.resorted.append("spk2utt (regenerated from utt2spk)")
    fixed.save(path)
    return report
