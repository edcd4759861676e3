"""Kaldi data directories: load/save, validate, fix, subset, split, combine, filter, removeUtt.

A data dir holds Kaldi tables keyed by utterance (:data:`UTT_TABLES`: ``wav.scp utt2spk feats.scp
vad.scp utt2num_frames utt2dur text utt2lang utt2uniq utt2warp utt2gender utt2room``) or by speaker
(``spk2utt`` and :data:`SPK_TABLES`: ``spk2gender spk2warp spk2accent``), plus an optional ``trials/``
sub-directory of Kaldi trials files (``enroll test target|nontarget``), which every operation writing a
new dir copies unchanged. As in Kaldi's fix_data_dir.sh, only these names are tables; any other file
(``utt2spk_orig``, notes) is left alone unless named as an extra table (``fix --extra-files``: names
``utt2*`` or ``*.scp`` are keyed by utterance, ``spk2*`` by speaker). Keys are kept in C (byte) order,
which is Python's ``sorted`` order for str keys.

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
import dataclasses
import os
import shutil

from subtools.kaldi.fileio import atomic_write, read_table, text_lines, write_table

# Utterance tables with a dedicated attribute (file name -> attribute); other utt2*/spk2* files
# go to ``DataDir.tables`` under their file name.
UTT_FILES = {
    "wav.scp": "wav_scp",
    "utt2spk": "utt2spk",
    "feats.scp": "feats_scp",
    "vad.scp": "vad_scp",
    "utt2num_frames": "utt2num_frames",
    "utt2dur": "utt2dur",
}
UTT_TABLES = (*UTT_FILES, "text", "utt2lang", "utt2uniq", "utt2warp", "utt2gender", "utt2room")
SPK_TABLES = ("spk2gender", "spk2warp", "spk2accent")
TRIALS_DIR = "trials"
BACKUP_DIR = ".backup"


def is_utt_table(name):
    """True for a table file name keyed by utterance (known names, and extra ``utt2*`` / ``*.scp``)."""
    return name in UTT_TABLES or (name.startswith("utt2") or name.endswith(".scp")) and "/" not in name


def is_spk_table(name):
    """True for a table file name keyed by speaker (spk2utt excluded: it is derived)."""
    return name.startswith("spk2") and name != "spk2utt" and "/" not in name


def check_extra_tables(names):
    """ValueError for an extra table name that is neither an utterance nor a speaker table."""
    for name in names:
        if name == "spk2utt" or not (is_utt_table(name) or is_spk_table(name)):
            raise ValueError(f"extra table '{name}': expected an utterance table (utt2*, *.scp) or a speaker "
                             "table (spk2*)")


def table_names(path, extra=()):
    """Sorted names of the table files in data dir ``path``: the known tables plus ``extra``."""
    known = set(UTT_TABLES) | set(SPK_TABLES) | set(extra)
    return sorted(n for n in os.listdir(path) if n in known and os.path.isfile(os.path.join(path, n)))


def utt2spk_to_spk2utt(utt2spk):
    """{utt: spk} -> {spk: [utts]} with speakers and each speaker's utterances in C order."""
    spk2utt = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: spk2utt[spk] for spk in sorted(spk2utt)}


def read_spk2utt(path):
    """Kaldi ``spk2utt`` file -> {spk: [utts]}."""
    return {spk: rest.split() for spk, rest in read_table(path).items()}


def write_spk2utt(path, spk2utt):
    """{spk: [utts]} -> Kaldi ``spk2utt`` file (speakers in C order), atomically."""
    write_table(path, {spk: " ".join(utts) for spk, utts in spk2utt.items()})


def spk2utt_to_utt2spk(spk2utt):
    """{spk: [utts]} -> {utt: spk} in C order; ValueError if an utterance has two speakers."""
    utt2spk = {}
    for spk, utts in spk2utt.items():
        for utt in utts:
            if utt in utt2spk and utt2spk[utt] != spk:
                raise ValueError(f"utterance '{utt}' belongs to speakers '{utt2spk[utt]}' and '{spk}'")
            utt2spk[utt] = spk
    return {utt: utt2spk[utt] for utt in sorted(utt2spk)}


def read_sorted_table(path):
    """read_table plus a check that the keys are in C order; ValueError naming the file otherwise."""
    table = read_table(path)
    keys = list(table)
    if keys != sorted(keys):
        bad = next(b for a, b in zip(keys, keys[1:]) if b < a)
        raise ValueError(
            f"{path}: keys not sorted in C order (first out of order: '{bad}'); "
            f"run: python3 subtools/data_dir.py fix {os.path.dirname(path) or '.'}"
        )
    return table


def _parse(path, table):
    """Typed values for the numeric tables (utt2num_frames int, utt2dur float) of file ``path``;
    ValueError naming the file and the key of a non-numeric value."""
    kind = {"utt2num_frames": int, "utt2dur": float}.get(os.path.basename(path))
    if kind is None:
        return table
    out = {}
    for key, value in table.items():
        try:
            out[key] = kind(value)
        except ValueError:
            raise ValueError(f"{path}: key '{key}': expected {kind.__name__}, got '{value}'") from None
    return out


def _format(value):
    return repr(value) if isinstance(value, float) else str(value)


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
            data.spk2utt = {k: v.split() for k, v in read_table(os.path.join(path, "spk2utt"), allow_duplicates).items()}
        for name in table_names(path, extra):
            data.set_table(name, _parse(os.path.join(path, name), read_table(os.path.join(path, name), allow_duplicates)))
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
        Also copies the trials/ directory it was loaded from, if any and if not already there.
        """
        os.makedirs(path, exist_ok=True)
        present = {**self.utt_tables(), **self.spk_tables()}
        for name in table_names(path):  # stale tables of an earlier content of ``path``
            if name not in present:
                os.remove(os.path.join(path, name))
        for name, table in present.items():
            write_table(os.path.join(path, name), {k: _format(v) for k, v in table.items()})
        if self.utt2spk is not None:
            self.spk2utt = utt2spk_to_spk2utt(self.utt2spk)
        if self.spk2utt is not None:
            write_spk2utt(os.path.join(path, "spk2utt"), self.spk2utt)
        if self.trials_src:
            dst = os.path.join(path, TRIALS_DIR)
            if os.path.abspath(dst) != os.path.abspath(self.trials_src):
                _copy_trials(self.trials_src, dst)


def _copy_file(src, dst):
    """Copy file ``src`` to ``dst`` atomically."""
    with open(src, "rb") as f, atomic_write(dst, "wb") as g:
        shutil.copyfileobj(f, g)


def _copy_trials(src, dst):
    """Copy the files of a trials/ dir (each atomically)."""
    for name in sorted(os.listdir(src)):
        if os.path.isfile(os.path.join(src, name)):
            _copy_file(os.path.join(src, name), os.path.join(dst, name))


# ----------------------------------------------------------------------------- checks


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


# ----------------------------------------------------------------------------- fix


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
            _copy_file(os.path.join(path, name), os.path.join(backup, name))
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
        data.set_table(name, _parse(os.path.join(path, name), table))
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
        old = read_table(os.path.join(path, "spk2utt"), allow_duplicates=True)
        if {s: v.split() for s, v in old.items()} != fixed.spk2utt:
            report.resorted.append("spk2utt (regenerated from utt2spk)")
    fixed.save(path)
    return report


# ----------------------------------------------------------------------------- subsets


def _check_dst(src, dst):
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError(f"destination must differ from source: {dst}")


def subset_dir(src, dst, utt_list=None, num=None, per_spk=None, spk_list=None):
    """Write a subset of ``src`` to ``dst`` and return its DataDir. Exactly one selector:

    - ``utt_list``: these utterance ids (unknown ids are ignored, like Kaldi filter_scp);
    - ``spk_list``: all utterances of these speakers;
    - ``num``: ``num`` utterances evenly spread over the sorted list (index floor(i*N/num));
    - ``per_spk``: per speaker, ``per_spk`` utterances evenly spread with Kaldi's stride
      (largest ``skip`` with per_spk*skip <= count; all utterances when fewer).
    """
    _check_dst(src, dst)
    if sum(x is not None for x in (utt_list, num, per_spk, spk_list)) != 1:
        raise ValueError("subset_dir: give exactly one of utt_list, num, per_spk, spk_list")
    data = DataDir.load(src)
    utts = data.utts()
    if utt_list is not None:
        keep = set(utt_list) & set(utts)
    elif spk_list is not None:
        spks = set(spk_list)
        keep = {u for u in utts if data.utt2spk[u] in spks}
    elif num is not None:
        if not 0 < num <= len(utts):
            raise ValueError(f"subset_dir: num={num} but {src} has {len(utts)} utterances")
        keep = {utts[i * len(utts) // num] for i in range(num)}
    else:
        if per_spk <= 0:
            raise ValueError(f"subset_dir: per_spk must be positive, got {per_spk}")
        keep = set()
        for spk_utts in utt2spk_to_spk2utt(data.utt2spk).values():
            skip = max(1, len(spk_utts) // per_spk)
            keep.update(spk_utts[: per_spk * skip : skip])
    out = data.select(keep)
    out.save(dst)
    return out


def filter_dir(src, dst, keys, exclude=False):
    """Write ``src`` restricted to utterance ids ``keys`` (or without them if ``exclude``)."""
    _check_dst(src, dst)
    data = DataDir.load(src)
    keys = set(keys)
    out = data.select([u for u in data.utts() if (u in keys) != exclude])
    out.save(dst)
    return out


def partition(utt2spk, n, by="spk"):
    """Split the sorted utterances into ``n`` contiguous, non-empty lists.

    ``by="utt"``: sizes differ by at most one. ``by="spk"``: each speaker in one part, part
    boundaries at the speaker boundary nearest to k*N/n utterances (Kaldi split_data.sh gives
    each job whole speakers with balanced utterance counts). ValueError if there are fewer
    utterances/speakers than parts.
    """
    utts = sorted(utt2spk)
    if by == "utt":
        if n > len(utts):
            raise ValueError(f"cannot split {len(utts)} utterances into {n} parts")
        return [utts[k * len(utts) // n : (k + 1) * len(utts) // n] for k in range(n)]
    if by != "spk":
        raise ValueError(f"split by 'spk' or 'utt', not '{by}'")
    groups = list(utt2spk_to_spk2utt(utt2spk).values())
    if n > len(groups):
        raise ValueError(f"cannot split {len(groups)} speakers into {n} parts")
    parts, start, done = [], 0, 0
    for k in range(1, n):
        target = k * len(utts) / n
        end, count = start + 1, done + len(groups[start])  # at least one speaker per part
        while end < len(groups) - (n - k) and abs(count + len(groups[end]) - target) <= abs(count - target):
            count += len(groups[end])
            end += 1
        parts.append([u for g in groups[start:end] for u in g])
        start, done = end, count
    parts.append([u for g in groups[start:] for u in g])
    return parts


def split_dir(src, n, by="spk"):
    """Split ``src`` into ``src/split{n}/{1..n}`` (``split{n}utt`` when by="utt"), like Kaldi
    split_data.sh; returns the list of part paths. Parts are rewritten on every call (atomically);
    trials/ is not copied into the parts."""
    data = DataDir.load(src)
    root = os.path.join(src, f"split{n}" + ("utt" if by == "utt" else ""))
    paths = []
    data.trials_src = None  # job parts do not need the trials
    for k, part in enumerate(partition(data.utt2spk, n, by), 1):
        path = os.path.join(root, str(k))
        data.select(part).save(path)
        paths.append(path)
    return paths


def combine_dirs(dst, srcs):
    """Union of the data dirs ``srcs`` written to ``dst`` (Kaldi combine_data.sh).

    Utterance ids must be unique across sources (ValueError otherwise). A table is kept only if
    every source has it (otherwise it is left out, with a warning line returned). Speakers may
    appear in several sources; their speaker-table values must then agree. Trials files are
    copied from every source (same name with different content: ValueError).
    Returns (DataDir, warnings).
    """
    for src in srcs:
        _check_dst(src, dst)
    datas = [DataDir.load(s) for s in srcs]
    warnings, out = [], DataDir()
    names = set().union(*(set(d.utt_tables()) | set(d.spk_tables()) for d in datas))
    for name in sorted(names):
        having = [d for d in datas if name in {**d.utt_tables(), **d.spk_tables()}]
        if len(having) < len(datas):
            warnings.append(f"combine: {name} left out: present in {len(having)} of {len(datas)} sources")
            continue
        merged = {}
        for src, d in zip(srcs, datas):
            table = {**d.utt_tables(), **d.spk_tables()}[name]
            for k, v in table.items():
                if k in merged and (is_utt_table(name) or merged[k] != v):
                    what = "utterance" if is_utt_table(name) else "speaker with different value"
                    raise ValueError(f"combine: {name}: duplicate {what} '{k}' (again in {src})")
                merged[k] = v
        out.set_table(name, merged)
    if out.utt2spk is None:
        raise ValueError("combine: utt2spk must be present in every source")
    out.save(dst)
    copied = {}  # trials file name -> the source it was copied from by this call
    for src in srcs:
        tdir = os.path.join(src, TRIALS_DIR)
        if not os.path.isdir(tdir):
            continue
        for name in sorted(os.listdir(tdir)):
            s, t = os.path.join(tdir, name), os.path.join(dst, TRIALS_DIR, name)
            if not os.path.isfile(s):
                continue
            if name in copied:
                with open(s) as a, open(t) as b:
                    if a.read() != b.read():
                        raise ValueError(f"combine: trials/{name} differs between {copied[name]} and {src}")
                continue
            _copy_file(s, t)  # also replaces a file left in dst by an earlier run
            copied[name] = src
    return out, warnings


def remove_utt(src, dst, min_frames=200, min_utts=8):
    """ASV-subtools removeUtt: drop utterances with utt2num_frames < ``min_frames``, then speakers
    with fewer than ``min_utts`` remaining utterances (``min_utts`` <= 0: keep all speakers).

    Needs ``src/utt2num_frames``. Writes ``dst`` (may equal ``src``: the tables are rewritten
    atomically). Returns {utt: reason} of the removed utterances.
    """
    data = DataDir.load(src)
    if data.utt2num_frames is None:
        raise FileNotFoundError(f"{src}/utt2num_frames: missing (make features first)")
    removed = {}
    for utt in data.utts():
        frames = data.utt2num_frames.get(utt)
        if frames is None:
            removed[utt] = "no utt2num_frames entry"
        elif frames < min_frames:
            removed[utt] = f"{frames} frames < {min_frames}"
    if min_utts > 0:
        left = utt2spk_to_spk2utt({u: s for u, s in data.utt2spk.items() if u not in removed})
        for spk, utts in left.items():
            if len(utts) < min_utts:
                for u in utts:
                    removed[u] = f"speaker {spk} has {len(utts)} utterances < {min_utts}"
    data.select([u for u in data.utts() if u not in removed]).save(dst)
    return removed
