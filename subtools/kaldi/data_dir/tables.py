"""Kaldi data-dir table names and the conversions between them (utt2spk <-> spk2utt, typed values).

Utterance tables: :data:`UTT_TABLES`; speaker tables: :data:`SPK_TABLES` (spk2utt is derived from
utt2spk and handled apart). As in Kaldi's fix_data_dir.sh only these names (and extra names the user
gives) are tables; ``utt2*``/``*.scp`` names are keyed by utterance, ``spk2*`` by speaker.
"""
import os

from subtools.kaldi.fileio import read_table, write_table


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


def read_spk2utt(path, allow_duplicates=False):
    """Kaldi ``spk2utt`` file -> {spk: [utts]} (``allow_duplicates``: a repeated speaker's last line wins)."""
    return {spk: rest.split() for spk, rest in read_table(path, allow_duplicates).items()}


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


def parse_values(path, table):
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


def format_value(value):
    return repr(value) if isinstance(value, float) else str(value)
