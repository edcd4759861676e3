"""The built-in corpus as built (size tiny): data dirs, audio, trials, MUSAN/RIRS trees,
determinism and restartability."""
import argparse
import filecmp
import glob
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import build_tiny_corpus
from recipe.mini.local.signals import sabine_rt60
from recipe.mini.local.speakers import plan_speakers
from recipe.mini.make_corpus import claim_corpus_dir
from subtools.kaldi.data_dir import DataDir, validate_dir
from subtools.kaldi.fileio import read_table
from subtools.kaldi.trials import read_trials


def test_speakers_counts_and_disjoint_sets(tiny_corpus):
    cfg = tiny_corpus.config
    train, test = DataDir.load(tiny_corpus.train), DataDir.load(tiny_corpus.test)
    assert validate_dir(tiny_corpus.train) == [] and validate_dir(tiny_corpus.test) == []
    for data, part in ((train, cfg["train"]), (test, cfg["test"])):
        assert len(data.spk2utt) == part["speakers"]
        assert all(len(utts) == part["utts"] for utts in data.spk2utt.values())
        assert set(data.tables["spk2gender"].values()) <= {"f", "m"}
        assert set(data.tables["spk2accent"].values()) <= set(cfg["voices"]["accents"])
        assert all(u.startswith(s + "-") for u, s in data.utt2spk.items())
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in data.wav_scp.values())
    dev_dir = os.path.join(tiny_corpus.data_dir, "mini_dev")
    dev = DataDir.load(dev_dir)
    assert validate_dir(dev_dir) == [] and len(dev.spk2utt) == cfg["dev"]["speakers"]
    assert all(len(utts) == cfg["dev"]["utts"] for utts in dev.spk2utt.values())
    assert not set(train.spk2utt) & set(test.spk2utt)
    assert not set(dev.spk2utt) & (set(train.spk2utt) | set(test.spk2utt))
    rows = [line.split() for line in open(os.path.join(tiny_corpus.corpus_dir, "speakers.txt"))]
    voices = {(r[2], r[3]): r[1] for r in rows}
    assert len(voices) == len(rows) == sum(cfg[part]["speakers"] for part in ("train", "test", "dev"))  # distinct
    _, _, babble, _ = plan_speakers(cfg)
    assert not {(s.accent, s.variant) for s in babble} & set(voices)
    assert not {s.variant for s in babble} & {r[3] for r in rows}


def test_audio_is_16k_mono_pcm16_within_duration_limits(tiny_corpus):
    lo, hi = tiny_corpus.config["utterance"]["duration_s"]
    for data_dir in (tiny_corpus.train, tiny_corpus.test):
        utt2dur = read_table(os.path.join(data_dir, "utt2dur"))
        for utt, path in read_table(os.path.join(data_dir, "wav.scp")).items():
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), utt
            assert lo <= info.frames / 16000 <= hi, utt
            assert abs(float(utt2dur[utt]) - info.frames / 16000) < 1e-4, utt
            wave, _ = sf.read(path)
            assert 10 ** (-20.5 / 20) < np.max(np.abs(wave)) < 10 ** (-2.5 / 20), utt  # configured peak range


def test_trials_format_and_hard_constraint(tiny_corpus):
    test = DataDir.load(tiny_corpus.test)
    spk = test.utt2spk
    group = {s: (test.tables["spk2accent"][s], test.tables["spk2gender"][s]) for s in test.spk2utt}
    lists = {}
    for name in ("mini-O", "mini-H"):
        trials = read_trials(os.path.join(tiny_corpus.test, "trials", name))
        pairs = [frozenset((e, t)) for e, t, _ in trials]
        assert len(set(pairs)) == len(pairs), "duplicate pair"
        for enroll, test_utt, label in trials:
            assert enroll != test_utt and enroll in spk and test_utt in spk
            assert (label == "target") == (spk[enroll] == spk[test_utt])
        lists[name] = trials
    # tiny: 4 speakers x 4 utts -> 24 target pairs, all taken (fewer than half of 120)
    for name in lists:
        assert sum(label == "target" for *_, label in lists[name]) == 24
    hard_non = [(e, t) for e, t, label in lists["mini-H"] if label == "nontarget"]
    assert hard_non and all(group[spk[e]] == group[spk[t]] for e, t in hard_non)
    assert any(group[spk[e]] != group[spk[t]] for e, t, label in lists["mini-O"] if label == "nontarget")
    assert {(e, t) for e, t, label in lists["mini-O"] if label == "target"} == \
           {(e, t) for e, t, label in lists["mini-H"] if label == "target"}
    # mini-dev (held-out speakers, calibration): every pair of its utterances, labelled by speaker
    dev = DataDir.load(os.path.join(tiny_corpus.data_dir, "mini_dev"))
    dev_trials = read_trials(os.path.join(tiny_corpus.data_dir, "mini_dev", "trials", "mini-dev"))
    utts = sorted(dev.utt2spk)
    assert sorted((e, t) for e, t, _ in dev_trials) == [(a, b) for i, a in enumerate(utts) for b in utts[i + 1:]]
    assert all((label == "target") == (dev.utt2spk[e] == dev.utt2spk[t]) for e, t, label in dev_trials)


def _parse_list(path, options):
    parser = argparse.ArgumentParser()
    for option in options:
        parser.add_argument(option, required=True)
    parser.add_argument("location")
    return [parser.parse_args(line.split()) for line in open(path)]


def test_musan_layout_and_annotations(tiny_corpus):
    musan, counts = os.path.join(tiny_corpus.corpus_dir, "musan"), tiny_corpus.config["musan"]
    for kind, source, columns in (("noise", "free-sound", 2), ("music", "fma", 4), ("speech", "librivox", 3)):
        folder = os.path.join(musan, kind, source)
        rows = [line.split() for line in open(os.path.join(folder, "ANNOTATIONS"))]
        assert len(rows) == counts[kind] and all(len(r) == columns for r in rows)
        wavs = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(folder, "*.wav")))
        assert wavs == sorted(r[0] for r in rows) == [f"{kind}-{source}-{i:04d}" for i in range(counts[kind])]
        for name in wavs:
            info = sf.info(os.path.join(folder, name + ".wav"))
            assert (info.samplerate, info.channels) == (16000, 1) and info.frames > 16000
    assert all(r[2] == "N" for r in (line.split() for line in open(os.path.join(musan, "music/fma/ANNOTATIONS"))))


def test_rirs_layout_and_lists(tiny_corpus):
    root, rirs = tiny_corpus.corpus_dir, tiny_corpus.config["rirs"]
    for room_type, prefix in (("smallroom", "small"), ("mediumroom", "medium")):
        folder = os.path.join(root, "RIRS_NOISES/simulated_rirs", room_type)
        entries = _parse_list(os.path.join(folder, "rir_list"), ["--rir-id", "--room-id"])
        assert len(entries) == rirs["rooms"] * rirs["rirs_per_room"]
        rooms = {line.split()[0] for line in open(os.path.join(folder, "room_info"))}
        for e in entries:
            room = e.room_id[len(prefix) + 1:]
            assert e.room_id == f"{prefix}-{room}" and room in rooms
            assert e.location == f"RIRS_NOISES/simulated_rirs/{room_type}/{room}/{e.rir_id[len(prefix) + 1:]}.wav"
            assert os.path.isfile(os.path.join(root, e.location))
    real = os.path.join(root, "RIRS_NOISES/real_rirs_isotropic_noises")
    rir_entries = _parse_list(os.path.join(real, "rir_list"), ["--rir-id", "--room-id"])
    noise_entries = _parse_list(os.path.join(real, "noise_list"),
                                ["--noise-id", "--noise-type", "--bg-fg-type", "--room-linkage"])
    assert len(rir_entries) == len(noise_entries) == rirs["real"]
    assert {n.room_linkage for n in noise_entries} == {r.room_id for r in rir_entries}
    assert all(os.path.isfile(os.path.join(root, e.location)) for e in rir_entries + noise_entries)


def schroeder_rt60(h, sr):
    """RT60 from the T20 slope (-5 to -25 dB) of the Schroeder backward-integrated energy decay."""
    energy = np.cumsum(h[::-1] ** 2)[::-1]
    edc = 10 * np.log10(np.maximum(energy, 1e-30) / energy[0])
    idx = np.flatnonzero((edc <= -5) & (edc >= -25))
    return -60.0 / np.polyfit(idx / sr, edc[idx], 1)[0]


def test_rir_decay_matches_room_rt60(tiny_corpus):
    for room_type in ("smallroom", "mediumroom"):
        folder = os.path.join(tiny_corpus.corpus_dir, "RIRS_NOISES/simulated_rirs", room_type)
        info = {r[0]: [float(v) for v in r[1:]] for r in (line.split() for line in open(os.path.join(folder, "room_info")))}
        for line in open(os.path.join(folder, "rir_list")):
            path = line.split()[-1]
            values = info[path.split("/")[-2]]
            h, sr = sf.read(os.path.join(tiny_corpus.corpus_dir, path))
            assert np.argmax(np.abs(h)) < 0.1 * sr  # direct path first (within 34 m)
            assert schroeder_rt60(h, sr) == pytest.approx(sabine_rt60(values[:3], values[6]), rel=0.1), path


def _tree(root):
    return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**"), recursive=True) if os.path.isfile(p))


def _same_corpus(a, b):
    """Byte-identical trees, except wav.scp whose absolute paths differ by the root."""
    assert _tree(a) == _tree(b)
    for rel in _tree(a):
        if rel.endswith("wav.scp"):
            assert open(os.path.join(a, rel)).read().replace(a, "") == open(os.path.join(b, rel)).read().replace(b, "")
        else:
            assert filecmp.cmp(os.path.join(a, rel), os.path.join(b, rel), shallow=False), rel


def test_same_seed_same_bytes_and_restart(tiny_corpus, tmp_path):
    first = os.path.dirname(tiny_corpus.corpus_dir)
    second = build_tiny_corpus(str(tmp_path))
    _same_corpus(first, str(tmp_path))
    # interrupted run: some utterances, a RIR, a list file and a data dir file missing -> rebuilt identically
    for rel in ("corpus/wav/tr0001/tr0001-0002.wav", "corpus/wav/te0003/te0003-0004.wav",
                "corpus/RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00002.wav",
                "corpus/musan/music/fma/ANNOTATIONS", "data/mini_test/trials/mini-H", "data/mini_train/utt2dur"):
        os.remove(os.path.join(tmp_path, rel))
    build_tiny_corpus(str(tmp_path))
    _same_corpus(first, str(tmp_path))
    # a finished wav is kept, not re-synthesised
    kept = os.path.join(second.corpus_dir, "wav/tr0001/tr0001-0001.wav")
    stamp = os.stat(kept).st_mtime_ns
    build_tiny_corpus(str(tmp_path))
    assert os.stat(kept).st_mtime_ns == stamp
    # another config is refused instead of mixing corpora
    with pytest.raises(ValueError, match="another config"):
        claim_corpus_dir({**tiny_corpus.config, "seed": 1}, second.corpus_dir)
