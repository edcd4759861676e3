#!/usr/bin/env python3
"""Build the built-in synthetic speaker-verification corpus (espeak-ng voices, seeded).

    python3 recipe/mini/make_corpus.py --config conf/mini_corpus.yaml --size small \\
        --out corpus/mini --data data

writes under ``--out``: ``wav/<spk>/<utt>.wav`` (16 kHz mono 16-bit, 3-8 s, one random channel
per utterance), ``speakers.txt`` (``spk set accent variant gender pitch rate``), ``musan/`` and
``RIRS_NOISES/`` in the real layouts with their list files (see ``recipe/mini/local/musan_rirs.py``)
and ``corpus_config.yaml`` (the resolved config and espeak-ng version it was built with); under
``--data``: Kaldi data dirs ``mini_train/`` and ``mini_test/`` (wav.scp with absolute paths,
utt2spk, spk2utt, utt2dur, spk2gender, spk2accent) and ``mini_test/trials/{mini-O,mini-H}``; with a
``dev`` entry in the config also ``mini_dev/`` and ``mini_dev/trials/mini-dev`` (speakers of neither
train nor test, for calibration).

Policies: the corpus is a function of the config and the espeak-ng version only (per-item random
streams, so ``--nj`` does not matter); a re-run keeps every finished wav and synthesises only the
missing ones (each file is written atomically); a ``--out`` built from a different config or
espeak-ng version is refused rather than mixed. Missing espeak-ng: exit 2 with the install command.
"""
import argparse
import multiprocessing
import os
import subprocess
import sys
import time

import yaml

from recipe.mini.local import musan_rirs
from recipe.mini.local.common import rng_for
from recipe.mini.local.espeak import ESPEAK, EspeakError, require_espeak
from recipe.mini.local.speakers import build_speaker, plan_speakers, utt_ids, wav_path
from recipe.mini.local.trials import make_trials
from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import atomic_write, write_lines
from subtools.kaldi.trials import count_trials, format_trials

SIZE_KEYS = ("train", "test", "trials", "musan", "rirs")


def load_config(path, size):
    """The config with the named size's entries merged in (one level deep) and ``size`` recorded."""
    with open(path) as f:
        cfg = yaml.safe_load(f)
    sizes = cfg.pop("sizes")
    if size not in sizes:
        raise ValueError(f"{path}: no size '{size}' (sizes: {', '.join(sizes)})")
    for key, value in sizes[size].items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    missing = [k for k in SIZE_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"{path}: size '{size}' lacks {', '.join(missing)}")
    cfg["size"] = size
    return cfg


def espeak_version():
    return subprocess.run([ESPEAK, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def claim_corpus_dir(cfg, corpus_dir):
    """Record the config in ``corpus_config.yaml``; refuse a dir built with another one."""
    stamp = yaml.safe_dump({"config": cfg, "espeak_version": espeak_version()}, sort_keys=True)
    path = os.path.join(corpus_dir, "corpus_config.yaml")
    if os.path.exists(path):
        with open(path) as f:
            if f.read() != stamp:
                raise ValueError(f"{corpus_dir} was built with another config or espeak-ng version "
                                 f"(see {path}); use a new --out directory or remove it")
        return
    with atomic_write(path) as f:
        f.write(stamp)


def _run_task(task):
    """Pool worker: ``(kind, args)`` -> ``(kind, key, result)``."""
    kind, cfg, corpus_dir, *args = task
    if kind == "speaker":
        speaker, num = args
        return kind, speaker.spk, build_speaker(cfg, corpus_dir, speaker, num)
    builder = {"noise": musan_rirs.build_noise, "music": musan_rirs.build_music, "speech": musan_rirs.build_babble,
               "room": musan_rirs.build_room, "real": musan_rirs.build_real}[kind]
    builder(cfg, corpus_dir, *args)
    return kind, None, None


def build_audio(cfg, corpus_dir, speakers, babble, rooms, nj):
    """Synthesise everything missing with ``nj`` processes; return {utt: num_samples}."""
    tasks = [("speaker", cfg, corpus_dir, s, cfg[subset]["utts"]) for subset, group in speakers.items() for s in group]
    tasks += [("speech", cfg, corpus_dir, i, s) for i, s in enumerate(babble)]
    tasks += [("noise", cfg, corpus_dir, i) for i in range(cfg["musan"]["noise"])]
    tasks += [("music", cfg, corpus_dir, i) for i in range(cfg["musan"]["music"])]
    tasks += [("room", cfg, corpus_dir, r, cfg["rirs"]["rirs_per_room"]) for r in rooms]
    tasks += [("real", cfg, corpus_dir, i) for i in range(1, cfg["rirs"]["real"] + 1)]
    utt2samples = {}
    with multiprocessing.Pool(nj) as pool:
        for kind, _, result in pool.imap_unordered(_run_task, tasks):
            if kind == "speaker":
                utt2samples.update(result)
    return utt2samples


def write_data_dir(path, speakers, corpus_dir, utt2samples, num_utts, sample_rate):
    utts = {u: s for s in speakers for u in utt_ids(s, num_utts)}
    DataDir(wav_scp={u: os.path.abspath(wav_path(corpus_dir, u)) for u in utts},
            utt2spk={u: s.spk for u, s in utts.items()},
            utt2dur={u: round(utt2samples[u] / sample_rate, 4) for u in utts},
            tables={"spk2gender": {s.spk: s.gender for s in speakers},
                    "spk2accent": {s.spk: s.accent for s in speakers}}).save(path)
    return {u: s.spk for u, s in utts.items()}


def write_trials(cfg, data_dir, speakers, utt2spk, lists=(("mini-O", False), ("mini-H", True))):
    """Write ``data_dir/trials/<name>`` for each ``(name, hard)`` of ``lists``; return {name: (targets, nontargets)}."""
    spk2group = {s.spk: f"{s.accent}/{s.gender}" for s in speakers}
    counts = {}
    for name, hard in lists:
        trials = make_trials(utt2spk, spk2group, cfg["trials"][name], rng_for(cfg["seed"], "trials"), hard=hard)
        write_lines(os.path.join(data_dir, "trials", name), format_trials(trials))
        counts[name] = count_trials(trials)
    return counts


def build_corpus(cfg, corpus_dir, data_dir, nj, log=print):
    """Build (or complete) the corpus; return a summary dict."""
    start = time.time()
    os.makedirs(corpus_dir, exist_ok=True)
    claim_corpus_dir(cfg, corpus_dir)
    train, test, babble, dev = plan_speakers(cfg)
    rooms = [r for t in musan_rirs.ROOM_TYPES for r in musan_rirs.plan_rooms(cfg, t, cfg["rirs"]["rooms"])]
    write_lines(os.path.join(corpus_dir, "speakers.txt"),
                [f"{s.spk} {subset} {s.accent} {s.variant} {s.gender} {s.pitch} {s.rate}"
                 for subset, group in (("train", train), ("test", test), ("dev", dev)) for s in group])
    utt2samples = build_audio(cfg, corpus_dir, {"train": train, "test": test, "dev": dev}, babble, rooms, nj)
    musan_rirs.write_lists(cfg, corpus_dir, rooms, babble)
    sr = cfg["sample_rate"]
    write_data_dir(os.path.join(data_dir, "mini_train"), train, corpus_dir, utt2samples, cfg["train"]["utts"], sr)
    test_utt2spk = write_data_dir(os.path.join(data_dir, "mini_test"), test, corpus_dir, utt2samples, cfg["test"]["utts"], sr)
    counts = write_trials(cfg, os.path.join(data_dir, "mini_test"), test, test_utt2spk)
    if dev:
        dev_utt2spk = write_data_dir(os.path.join(data_dir, "mini_dev"), dev, corpus_dir, utt2samples,
                                     cfg["dev"]["utts"], sr)
        counts.update(write_trials(cfg, os.path.join(data_dir, "mini_dev"), dev, dev_utt2spk, (("mini-dev", False),)))
    limits = [int(round(d * sr)) for d in cfg["utterance"]["duration_s"]]
    sets = "train,test,dev" if dev else "train,test"
    summary = {"train_speakers": len(train), "test_speakers": len(test), "dev_speakers": len(dev),
               "utterances": len(utt2samples),
               "hours": sum(utt2samples.values()) / sr / 3600, "trials": counts,
               "held_at_limits": sum(n in limits for n in utt2samples.values()), "seconds": time.time() - start}
    log(f"mini corpus '{cfg['size']}': {len(train)} train + {len(test)} test + {len(dev)} dev speakers, "
        f"{len(utt2samples)} utterances "
        f"({summary['hours']:.2f} h, {summary['held_at_limits']} cut/padded to the duration limits); "
        + "; ".join(f"{k}: {t} target + {n} nontarget trials" for k, (t, n) in counts.items())
        + f"; {summary['seconds']:.1f} s with {nj} jobs -> {corpus_dir}, {data_dir}/mini_{{{sets}}}")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/mini_corpus.yaml", help="corpus config (default %(default)s)")
    parser.add_argument("--size", default="small", help="named size in the config: tiny|small|full (default %(default)s)")
    parser.add_argument("--out", required=True, help="corpus directory (audio, MUSAN/RIRS trees)")
    parser.add_argument("--data", required=True,
                        help="directory for the data dirs mini_train/, mini_test/ (and mini_dev/)")
    parser.add_argument("--nj", type=int, default=len(os.sched_getaffinity(0)), help="parallel processes (default: CPUs)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.size)
        require_espeak(cfg["voices"]["accents"], [v for key in ("female", "male") for v in
                                                  cfg["voices"][key] + cfg["voices"]["babble"].get(key, [])])
        build_corpus(cfg, os.path.abspath(args.out), args.data, max(1, args.nj))
    except EspeakError as err:
        print(f"make_corpus.py: {err}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, OSError) as err:  # bad config / refused --out / unreadable file
        print(f"make_corpus.py: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
