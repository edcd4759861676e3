"""Augmented copies of a data dir: reverb, noise, music, babble (Kaldi voxceleb/v2, ASV-subtools
``augmentDataByNoise.sh``).

For a clean dir with N utterances this writes a dir of ``round(factor * N)`` augmented copies
(utterance ``<utt>-<kind>``, same speaker); combined with the clean dir (``copies --combined`` or
``augment.py combine``) it is the training set. Kinds and Kaldi's settings:

- ``reverb``: one simulated RIR, from the small-room or the medium-room list with probability 0.5 each
  (``--rir-dirs``/``--rir-probs``), then uniformly within the list;
- ``noise``: MUSAN noise as foreground: noises one after another with a 1 s gap until the utterance
  is covered (Kaldi ``augment_data_dir.py --fg-interval 1``), each at an SNR from 15/10/5/0 dB;
- ``music``: one MUSAN music file as background (looped over the utterance), SNR from 15/10/8/5;
- ``babble``: 3-7 MUSAN speech files as background, each at an SNR from 20/17/15/13.

No audio is written: each copy's ``wav.scp`` entry is a ``python3 subtools/kaldi/augment_wav.py ... |``
pipe carrying the clean entry (shlex-quoted, may itself be a pipe) and every choice made here (RIR,
noise files, SNRs, start times), so the audio is rendered identically whenever features are computed.
Choices come from a random generator seeded by ``(seed, kind, utterance)``: the same utterance gets
the same augmentation whatever else is in the dir.

Which copies (``--subset``): the T kinds of each clean utterance form a pool of T*N candidates.
``balanced`` (default): the pool is ordered by utterance with the kind order rotated by one per
utterance and ``factor*N`` candidates are taken evenly spread over it (index floor(k*T*N/K)), so with
factor 1 every utterance gets one copy and the kinds alternate; with factor 2 two copies of different
kinds. ``kaldi``: as Kaldi's voxceleb recipe and ASV-subtools' augmentDataByNoise.sh (combine_data.sh,
then subset_data_dir.sh ``factor*N``): the candidates sorted by copy id, subset by subset_scp.pl's
recursive halving (:func:`~subtools.kaldi.data_dir.ops.evenly_spread`). At factor 1 with 4 kinds its
picks drift across utterance boundaries: for VoxCeleb2 dev (1,092,009 utterances) the kinds come out
balanced but 3 % of the utterances get two copies and 3 % none; at a power-of-two size every utterance
gets the last kind in sorted order (``reverb``).

The copies are as long as their clean utterance and time-aligned with it (RIR shifted to its
peak), so the clean VAD is reused: :func:`reuse_clean_vad` (``augment.py reuse-vad``), via the
``utt2uniq`` table (copy -> clean utterance) written here.
"""
import argparse
import os
import random
import shlex
import sys

from subtools.kaldi.audio import durations
from subtools.kaldi.data_dir import DataDir, combine_dirs
from subtools.kaldi.data_dir.ops import evenly_spread
from subtools.kaldi.fileio import write_table

KINDS = ("reverb", "noise", "music", "babble")
RENDER_COMMAND = ["python3", "subtools/kaldi/augment_wav.py"]


# ----------------------------------------------------------------------------- durations


def ensure_utt2dur(path, nj=1):
    """Load data dir ``path``, computing and saving its utt2dur if incomplete (audio headers for files,
    a full decode for pipes, as Kaldi's get_utt2dur.sh); returns the DataDir."""
    data = DataDir.load(path)
    if data.wav_scp is None:
        raise FileNotFoundError(f"{path}/wav.scp: missing")
    if data.utt2dur is None or set(data.utt2dur) != set(data.wav_scp):
        data.utt2dur = durations(data.wav_scp, nj)
        write_table(os.path.join(path, "utt2dur"), {u: repr(d) for u, d in data.utt2dur.items()})
    return data


# ----------------------------------------------------------------------------- choices


def _pick_rir(rng, rir_sets):
    """rir_sets: [(probability, [entries])]; choose a set by probability, then an RIR uniformly."""
    r, total = rng.random() * sum(p for p, _ in rir_sets), 0.0
    for prob, entries in rir_sets:
        total += prob
        if r < total:
            return rng.choice(entries)
    return rng.choice(rir_sets[-1][1])


def choose_args(kind, rng, duration, sources, settings):
    """augment_wav.py arguments for one copy of an utterance of ``duration`` seconds."""
    if kind == "reverb":
        return ["--rir", _pick_rir(rng, sources["reverb"])]
    if kind == "noise":  # foreground: back to back with an interval, until the utterance is covered
        noises, args, start = sources["noise"], [], 0.0
        keys = sorted(noises)
        while start < duration:
            entry, noise_dur = noises[rng.choice(keys)]
            args += ["--fg", entry, rng.choice(settings.noise_snrs), f"{start:.3f}"]
            start += noise_dur + settings.noise_interval
        return args
    pool = sources[kind]
    keys = sorted(pool)
    count = 1 if kind == "music" else int(rng.choice(settings.babble_speakers))
    snrs = settings.music_snrs if kind == "music" else settings.babble_snrs
    args = []
    for _ in range(count):
        args += ["--bg", pool[rng.choice(keys)][0], rng.choice(snrs)]
    return args


def select_copies(utts, kinds, factor, subset="balanced"):
    """[(utt, kind)] of the ``round(factor * len(utts))`` copies to make (see module doc)."""
    n, t = len(utts), len(kinds)
    if not 0 < factor <= t:
        raise ValueError(f"factor must be in (0, {t}] for {t} kinds, got {factor}")
    k_total = round(factor * n)
    if subset == "kaldi":
        pool = sorted((f"{utt}-{kind}", utt, kind) for utt in utts for kind in kinds)
        return [pool[i][1:] for i in evenly_spread(len(pool), k_total)]
    if subset != "balanced":
        raise ValueError(f"subset must be balanced or kaldi, got {subset!r}")
    chosen = []
    for k in range(k_total):
        index = k * t * n // k_total
        i, j = divmod(index, t)
        chosen.append((utts[i], kinds[(i + j) % t]))
    return chosen


def render_entry(aug_utt, clean_entry, args):
    """The wav.scp value of an augmented copy."""
    return shlex.join(RENDER_COMMAND + ["--utt", aug_utt, "--input", clean_entry.strip(), *args]) + " |"


def make_copies(clean, sources, kinds, factor, seed, settings, subset="balanced"):
    """DataDir of the augmented copies of DataDir ``clean`` (wav_scp, utt2spk, utt2dur, utt2uniq)."""
    copies = DataDir(wav_scp={}, utt2spk={}, utt2dur={})
    utt2uniq = {}
    for utt, kind in select_copies(clean.utts(), kinds, factor, subset):
        rng = random.Random(f"{seed}/{kind}/{utt}")
        aug = f"{utt}-{kind}"
        args = choose_args(kind, rng, clean.utt2dur[utt], sources, settings)
        copies.wav_scp[aug] = render_entry(aug, clean.wav_scp[utt], args)
        copies.utt2spk[aug] = clean.utt2spk[utt]
        copies.utt2dur[aug] = clean.utt2dur[utt]
        utt2uniq[aug] = utt
    copies.tables["utt2uniq"] = utt2uniq
    return copies


def combine_with_clean(out_dir, clean_dir, copies_dir):
    """Write clean + copies to ``out_dir`` (tables present in both), with ``utt2uniq`` covering the
    clean utterances too (themselves). Returns combine_dirs' warnings."""
    combined, warnings = combine_dirs(out_dir, [clean_dir, copies_dir])
    utt2uniq = DataDir.load(copies_dir).tables.get("utt2uniq", {})
    write_table(os.path.join(out_dir, "utt2uniq"), {u: utt2uniq.get(u, u) for u in combined.utts()})
    return [w for w in warnings if "utt2uniq" not in w]


def reuse_clean_vad(aug_dir, clean_dir):
    """Write ``aug_dir/vad.scp`` from the clean utterances' vad.scp entries (via ``aug_dir/utt2uniq``;
    an utterance missing from utt2uniq is its own clean utterance). Returns the sorted list of
    utterances left out because their clean utterance has no VAD (``fix_dir`` then drops them)."""
    clean_vad = DataDir.load(clean_dir).vad_scp
    if clean_vad is None:
        raise FileNotFoundError(f"{clean_dir}/vad.scp: missing (compute the clean VAD first)")
    aug = DataDir.load(aug_dir)
    utt2uniq = aug.tables.get("utt2uniq", {})
    vad, missing = {}, []
    for utt in aug.utts():
        source = utt2uniq.get(utt, utt)
        if source in clean_vad:
            vad[utt] = clean_vad[source]
        else:
            missing.append(utt)
    write_table(os.path.join(aug_dir, "vad.scp"), vad)
    return missing


# ----------------------------------------------------------------------------- sources and CLI


def load_sources(args, kinds, nj):
    """{kind: source} from the noise/RIR data dirs named on the command line: reverb -> [(prob,
    [entries])], noise -> {key: (entry, duration)}, music/babble -> {key: (entry, None)}."""
    sources = {}
    if "reverb" in kinds:
        dirs, probs = args.rir_dirs.split(","), [float(p) for p in args.rir_probs.split(",")]
        if len(dirs) != len(probs):
            raise ValueError(f"--rir-dirs has {len(dirs)} dirs but --rir-probs {len(probs)} values")
        sources["reverb"] = [(p, sorted(DataDir.load(d).wav_scp.values())) for d, p in zip(dirs, probs)]
    if "noise" in kinds:
        data = ensure_utt2dur(args.noise_dir, nj)
        sources["noise"] = {u: (data.wav_scp[u], data.utt2dur[u]) for u in data.utts()}
    for kind, path in (("music", args.music_dir), ("babble", args.babble_dir)):
        if kind in kinds:
            sources[kind] = {u: (e, None) for u, e in DataDir.load(path).wav_scp.items()}
    for kind, source in sources.items():
        entries = source if kind != "reverb" else [e for _, es in source for e in es]
        if not entries:
            raise ValueError(f"no {kind} sources found (empty wav.scp)")
    return sources


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("copies", help="write the augmented copies of a clean data dir",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    make.add_argument("--rir-dirs", help="comma-separated RIR data dirs (e.g. DATA/rirs_smallroom,DATA/rirs_mediumroom)")
    make.add_argument("--rir-probs", default="0.5,0.5", help="probability of each RIR dir")
    make.add_argument("--noise-dir", help="MUSAN noise data dir (foreground noise)")
    make.add_argument("--music-dir", help="MUSAN music data dir (background)")
    make.add_argument("--babble-dir", help="MUSAN speech data dir (babble)")
    make.add_argument("--kinds", help="comma-separated subset of reverb,noise,music,babble "
                                      "(default: every kind whose source dir is given)")
    make.add_argument("--factor", type=float, default=1.0, help="number of copies = factor x clean utterances")
    make.add_argument("--subset", choices=["balanced", "kaldi"], default="balanced",
                      help="which copies (see the module doc): kinds alternating, or Kaldi's subset of the sorted ids")
    make.add_argument("--seed", type=int, default=777)
    make.add_argument("--noise-snrs", default="15:10:5:0")
    make.add_argument("--noise-interval", type=float, default=1.0, help="seconds between foreground noises")
    make.add_argument("--music-snrs", default="15:10:8:5")
    make.add_argument("--babble-snrs", default="20:17:15:13")
    make.add_argument("--babble-speakers", default="3:4:5:6:7", help="numbers of babble speakers to choose from")
    make.add_argument("--nj", type=int, default=1, help="parallel jobs for computing a missing utt2dur")
    make.add_argument("--combined", help="also write CLEAN + copies combined to this dir")
    make.add_argument("clean", help="clean data dir (wav.scp, utt2spk; utt2dur computed if missing)")
    make.add_argument("copies", help="output dir of the augmented copies")
    comb = sub.add_parser("combine", help="combine a clean dir and its copies (feats/vad kept when both have them)")
    comb.add_argument("clean")
    comb.add_argument("copies")
    comb.add_argument("out")
    vad = sub.add_parser("reuse-vad", help="give augmented copies the vad.scp of their clean utterance")
    vad.add_argument("aug", help="augmented (or combined) data dir with utt2uniq")
    vad.add_argument("clean", help="clean data dir with vad.scp")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "combine":
        _combine(args.out, args.clean, args.copies)
        return
    if args.command == "reuse-vad":
        missing = reuse_clean_vad(args.aug, args.clean)
        print(f"reuse-vad: {args.aug}/vad.scp written; {len(missing)} utterances without clean VAD"
              + (f": {' '.join(missing[:10])}" if missing else ""))
        return
    given = {"reverb": args.rir_dirs, "noise": args.noise_dir, "music": args.music_dir,
             "babble": args.babble_dir}
    kinds = args.kinds.split(",") if args.kinds else [k for k in KINDS if given[k]]
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown kind '{kind}' (choose from {','.join(KINDS)})")
        if not given[kind]:
            raise ValueError(f"kind '{kind}' needs its source dir option")
    if not kinds:
        raise ValueError("no augmentation kinds: give --rir-dirs, --noise-dir, --music-dir or --babble-dir")
    for name in ("noise_snrs", "music_snrs", "babble_snrs", "babble_speakers"):
        setattr(args, name, getattr(args, name).split(":"))
    sources = load_sources(args, kinds, args.nj)
    clean = ensure_utt2dur(args.clean, args.nj)
    copies = make_copies(clean, sources, kinds, args.factor, args.seed, args, args.subset)
    copies.save(args.copies)
    counts = {k: sum(u.endswith("-" + k) for u in copies.utt2spk) for k in kinds}
    print(f"augment: {len(copies.utt2spk)} copies of {len(clean.utt2spk)} utterances in {args.copies} "
          + " ".join(f"{k}={c}" for k, c in counts.items()))
    if args.combined:
        _combine(args.combined, args.clean, args.copies)


def _combine(out_dir, clean_dir, copies_dir):
    for line in combine_with_clean(out_dir, clean_dir, copies_dir):
        print(line)
    print(f"augment: {out_dir} = {clean_dir} + {copies_dir}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"augment.py: {err}")
