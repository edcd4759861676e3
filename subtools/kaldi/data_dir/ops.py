"""Data dirs from data dirs: subset, filter, split into jobs, combine, and ASV-subtools' removeUtt."""
import os

from subtools.kaldi.data_dir.directory import DataDir, copy_file
from subtools.kaldi.data_dir.tables import TRIALS_DIR, is_utt_table, utt2spk_to_spk2utt


def evenly_spread(count, num):
    """Indices (ascending) of the ``num`` of ``count`` lines that Kaldi's ``utils/subset_scp.pl N`` keeps:
    recursive halving, the first half of a range gets ``floor(needed / 2)``, the second the rest; a range
    of one line is kept when it is still needed."""
    if not 0 <= num <= count:
        raise ValueError(f"cannot pick {num} of {count} lines")
    picked, stack = [], [(0, count, num)]
    while stack:
        start, end, needed = stack.pop()
        if needed == 0:
            continue
        if end - start == 1:
            picked.append(start)
            continue
        half = (end - start) // 2
        stack.append((start + half, end, needed - needed // 2))
        stack.append((start, start + half, needed // 2))
    return picked


def _check_dst(src, dst):
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError(f"destination must differ from source: {dst}")


def subset_dir(src, dst, utt_list=None, num=None, per_spk=None, spk_list=None):
    """Write a subset of ``src`` to ``dst`` and return its DataDir. Exactly one selector:

    - ``utt_list``: these utterance ids (unknown ids are ignored, like Kaldi filter_scp);
    - ``spk_list``: all utterances of these speakers;
    - ``num``: ``num`` utterances evenly spread over the sorted list, as Kaldi's subset_scp.pl
      (:func:`evenly_spread`);
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
        keep = {utts[i] for i in evenly_spread(len(utts), num)}
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
            copy_file(s, t)  # also replaces a file left in dst by an earlier run
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
