"""Augmentation: rendered SNRs, reverberation against scipy, determinism, CLI == in-process, and the
augmented data dir (copies, kinds, combine, VAD reuse).

SNRs are measured on renders with ``--no-normalize`` (noise = rendered - clean exactly, up to the
int16 rounding of 0.5 LSB); normalisation is checked separately as a pure rescaling.
"""
import io
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import soundfile

from subtools.kaldi import augment
from subtools.kaldi.audio import read_audio
from subtools.kaldi.augment_wav import build_parser, render
from subtools.kaldi.data_dir import DataDir, validate_dir
from subtools.kaldi.fileio import write_table

SR = 16000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNR_TOL_DB = 0.1


def _write(path, wave):
    soundfile.write(path, np.asarray(wave).astype(np.int16), SR)
    return str(path)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Clean speech-like signal (4 s, bursts of coloured noise) and noise/music/speech/RIR files."""
    d = tmp_path_factory.mktemp("aug_audio")
    rng = np.random.default_rng(7)
    t = np.arange(4 * SR) / SR
    envelope = 0.2 + (np.sin(2 * np.pi * 3 * t) > 0)
    clean = scipy.signal.lfilter([1], [1, -0.9], rng.standard_normal(t.size)) * envelope * 900
    files = {"clean": _write(d / "clean.wav", clean)}
    files["noise1"] = _write(d / "noise1.wav", rng.standard_normal(int(1.2 * SR)) * 1500)
    files["noise2"] = _write(d / "noise2.wav", rng.standard_normal(int(0.4 * SR)) * 400)
    files["music"] = _write(d / "music.wav", np.sin(2 * np.pi * 440 * np.arange(int(1.3 * SR)) / SR) * 5000
                            + rng.standard_normal(int(1.3 * SR)) * 300)
    for i in range(3):
        files[f"speech{i}"] = _write(d / f"speech{i}.wav",
                                     scipy.signal.lfilter([1], [1, -0.5 - 0.1 * i], rng.standard_normal(6 * SR)) * 700)
    rir = np.zeros(3000)
    rir[57] = 30000  # direct path (the peak)
    rir[58:] = rng.standard_normal(2942) * 6000 * np.exp(-np.arange(2942) / 400)
    rir[10] = 2000  # a small pre-peak sample: the shift must use the peak, not the first non-zero
    files["rir"] = _write(d / "rir.wav", rir)
    return {k: v for k, v in files.items()}


def _read(path):
    return soundfile.read(path, dtype="int16")[0].astype(np.float64)


def _snr(clean, noise):
    return 10 * np.log10(np.mean(clean ** 2) / np.mean(noise ** 2))


def test_music_background_snr(audio):
    clean = _read(audio["clean"])
    for snr in (15, 10, 8, 5):
        out, rate = render(["--input", audio["clean"], "--bg", audio["music"], str(snr), "--no-normalize"])
        assert rate == SR and out.shape == clean.shape
        assert abs(_snr(clean, out - clean) - snr) < SNR_TOL_DB
        # the noise is the music file looped over the utterance (wav-reverberate --duration)
        looped = np.resize(_read(audio["music"]), clean.size)
        assert np.corrcoef(out - clean, looped)[0, 1] > 0.9999


def test_babble_per_speaker_snr(audio):
    clean = _read(audio["clean"])
    snrs = [20, 17, 13]
    argv = ["--input", audio["clean"], "--no-normalize"]
    for i, snr in enumerate(snrs):
        argv += ["--bg", audio[f"speech{i}"], str(snr)]
    out, _ = render(argv)
    # least squares on the three (truncated) speech signals recovers each speaker's scale
    basis = np.stack([_read(audio[f"speech{i}"])[:clean.size] for i in range(3)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, out - clean, rcond=None)
    for i, snr in enumerate(snrs):
        assert abs(_snr(clean, coef[i] * basis[:, i]) - snr) < SNR_TOL_DB


def test_noise_foreground_snr_and_placement(audio):
    clean = _read(audio["clean"])
    n1, n2 = _read(audio["noise1"]), _read(audio["noise2"])
    start2 = n1.size / SR + 1.0  # back to back with a 1 s interval
    start3 = start2 + n2.size / SR + 1.0  # runs past the end of the utterance: cut
    out, _ = render(["--input", audio["clean"], "--no-normalize", "--fg", audio["noise1"], "15", "0",
                     "--fg", audio["noise2"], "0", f"{start2}", "--fg", audio["noise1"], "5", f"{start3}"])
    noise = out - clean
    s2, s3 = int(start2 * SR), int(start3 * SR)
    # SNR of each noise against the whole clean utterance, noise power over the whole noise file
    assert abs(_snr(clean, noise[:n1.size]) - 15) < SNR_TOL_DB
    assert abs(_snr(clean, noise[s2:s2 + n2.size]) - 0) < SNR_TOL_DB
    cut = clean.size - s3
    assert 0 < cut < n1.size
    expected = n1[:cut] * np.sqrt(10 ** (-5 / 10) * np.mean(clean ** 2) / np.mean(n1 ** 2))
    assert np.max(np.abs(noise[s3:] - expected)) <= 0.5 + 1e-9
    assert np.all(np.abs(noise[n1.size:s2]) <= 0.5)  # silence in the 1 s gap (only rounding)


def test_normalisation_is_a_rescaling_to_clean_power(audio):
    clean = _read(audio["clean"])
    base = ["--input", audio["clean"], "--bg", audio["music"], "0"]
    raw, _ = render(base + ["--no-normalize"])
    norm, _ = render(base)
    gain = np.sqrt(np.mean(clean ** 2) / np.mean(raw.astype(np.float64) ** 2))
    assert np.max(np.abs(norm - raw * gain)) <= 0.5 * (1 + gain) + 1e-6
    assert abs(np.mean(norm.astype(np.float64) ** 2) / np.mean(clean ** 2) - 1) < 1e-3


def test_reverb_equals_fftconvolve_shifted_to_peak(audio):
    clean, rir = _read(audio["clean"]), _read(audio["rir"]) / 2 ** 15
    peak = int(np.argmax(rir))
    assert peak == 57
    full = scipy.signal.fftconvolve(clean, rir)
    expected = full[peak:peak + clean.size]
    raw, _ = render(["--input", audio["clean"], "--rir", audio["rir"], "--no-normalize"])
    assert np.max(np.abs(raw - expected)) <= 0.5 + 1e-6
    norm, _ = render(["--input", audio["clean"], "--rir", audio["rir"]])
    expected_norm = expected * np.sqrt(np.mean(clean ** 2) / np.mean(expected ** 2))
    assert np.max(np.abs(norm - expected_norm)) <= 0.5 + 1e-6


def test_render_deterministic_cli_identical_and_read_audio_fast_path(audio, tmp_path):
    # the clean input is itself a pipe, quoted inside the augmentation command
    clean_entry = f"sox {shlex.quote(audio['clean'])} -t wav - |" if _has("sox") else \
        f"cat {shlex.quote(audio['clean'])} |"
    argv = ["--utt", "u1-babble", "--input", clean_entry, "--bg", audio["speech0"], "13",
            "--bg", audio["speech1"], "20", "--bg", audio["speech2"], "17"]
    first, _ = render(argv)
    second, _ = render(list(argv))
    assert np.array_equal(first, second)
    cli = subprocess.run([sys.executable, "subtools/kaldi/augment_wav.py", *argv], cwd=REPO,
                         capture_output=True, check=True).stdout
    from_cli, rate = soundfile.read(io.BytesIO(cli), dtype="int16")
    assert rate == SR and np.array_equal(from_cli.astype(np.float32), first)
    entry = augment.render_entry("u1-babble", clean_entry, argv[4:])
    via_read_audio, _ = read_audio(entry, "u1-babble")
    assert np.array_equal(via_read_audio, first)


def _has(tool):
    from shutil import which
    return which(tool) is not None


def test_bad_inputs_name_the_utterance_and_file(audio, tmp_path):
    with pytest.raises(ValueError, match=r"u9.*noise.*absent\.wav"):
        render(["--utt", "u9", "--input", audio["clean"], "--bg", str(tmp_path / "absent.wav"), "5"])
    with pytest.raises(ValueError, match="u9"):
        render(["--utt", "u9", "--input", str(tmp_path / "absent.wav")])
    silent = _write(tmp_path / "silent.wav", np.zeros(SR))
    with pytest.raises(ValueError, match="all zeros"):
        render(["--utt", "u9", "--input", audio["clean"], "--fg", silent, "5", "0"])
    with pytest.raises(ValueError, match="bad arguments"):
        render(["--input", audio["clean"], "--bg", audio["music"]])


# ----------------------------------------------------------------------------- data dirs


def test_select_copies_spreads_kinds_evenly():
    utts = [f"spk-u{i:02d}" for i in range(12)]
    one = augment.select_copies(utts, augment.KINDS, 1)
    assert [u for u, _ in one] == utts  # every utterance once
    assert {k: sum(kind == k for _, kind in one) for k in augment.KINDS} == {k: 3 for k in augment.KINDS}
    two = augment.select_copies(utts, augment.KINDS, 2)
    assert len(two) == 24 and len(set(two)) == 24
    assert all(sum(u == v for v, _ in two) == 2 for u in utts)
    assert len(augment.select_copies(utts, augment.KINDS, 0.5)) == 6
    with pytest.raises(ValueError):
        augment.select_copies(utts, augment.KINDS, 5)


def _data_dir(path, wav_scp, utt2spk):
    DataDir(wav_scp=wav_scp, utt2spk=utt2spk).save(str(path))
    return str(path)


@pytest.fixture()
def aug_setup(audio, tmp_path):
    clean_wave = _read(audio["clean"])
    wav_scp, utt2spk = {}, {}
    for s in range(2):
        for u in range(4):
            utt = f"spk{s}-vid-{u:05d}"
            wav_scp[utt] = _write(tmp_path / f"{utt}.wav", np.roll(clean_wave, 1000 * u + 7 * s)[: (2 + u % 2) * SR])
            utt2spk[utt] = f"spk{s}"
    dirs = {
        "clean": _data_dir(tmp_path / "train", wav_scp, utt2spk),
        "noise": _data_dir(tmp_path / "musan_noise", {"n1": audio["noise1"], "n2": audio["noise2"]}, {"n1": "n1", "n2": "n2"}),
        "music": _data_dir(tmp_path / "musan_music", {"m1": audio["music"]}, {"m1": "m1"}),
        "speech": _data_dir(tmp_path / "musan_speech", {f"s{i}": audio[f"speech{i}"] for i in range(3)},
                            {f"s{i}": f"s{i}" for i in range(3)}),
        "small": _data_dir(tmp_path / "rirs_smallroom", {"r1": audio["rir"]}, {"r1": "r1"}),
        "medium": _data_dir(tmp_path / "rirs_mediumroom", {"r2": audio["rir"]}, {"r2": "r2"}),
    }
    argv = ["copies", "--rir-dirs", f"{dirs['small']},{dirs['medium']}", "--noise-dir", dirs["noise"],
            "--music-dir", dirs["music"], "--babble-dir", dirs["speech"]]
    return tmp_path, dirs, argv


def test_augment_copies_combine_and_vad_reuse(aug_setup, monkeypatch):
    tmp_path, dirs, argv = aug_setup
    monkeypatch.chdir(REPO)
    copies, combined = str(tmp_path / "train_augcopies"), str(tmp_path / "train_aug")
    augment.main(argv + ["--factor", "1", dirs["clean"], copies, "--combined", combined])
    clean, aug = DataDir.load(dirs["clean"]), DataDir.load(copies)
    assert len(aug.utts()) == 8 and validate_dir(copies) == []
    kinds = [u.rsplit("-", 1)[1] for u in aug.utts()]
    assert sorted(kinds) == sorted(list(augment.KINDS) * 2)
    for utt in aug.utts():
        source = aug.tables["utt2uniq"][utt]
        assert utt.startswith(source + "-") and aug.utt2spk[utt] == clean.utt2spk[source]
        wave, _ = read_audio(aug.wav_scp[utt], utt)  # renders, same length as the clean utterance
        assert wave.size == read_audio(clean.wav_scp[source], source)[0].size
    # foreground noises cover the utterance: the last one starts before its end
    noisy = [u for u in aug.utts() if u.endswith("-noise")][0]
    parsed = build_parser().parse_args(shlex.split(aug.wav_scp[noisy][:-1])[2:])
    starts = [float(start) for _, _, start in parsed.fg]
    assert starts[0] == 0 and starts[-1] < aug.utt2dur[noisy] <= starts[-1] + 1.2 + 1.0
    babble = [u for u in aug.utts() if u.endswith("-babble")][0]
    assert 3 <= aug.wav_scp[babble].count("--bg") <= 7
    assert len(DataDir.load(combined).utts()) == 16 and validate_dir(combined) == []
    # deterministic: a second run gives the same wav.scp
    first = open(os.path.join(copies, "wav.scp")).read()
    augment.main(argv + ["--factor", "1", dirs["clean"], str(tmp_path / "again")])
    assert open(tmp_path / "again" / "wav.scp").read() == first
    # the clean VAD is reused for the copies; a clean utterance without VAD is reported
    vad = {u: f"vad.ark:{i}" for i, u in enumerate(clean.utts()[1:])}
    write_table(os.path.join(dirs["clean"], "vad.scp"), vad)
    missing = augment.reuse_clean_vad(copies, dirs["clean"])
    assert missing == [u for u in aug.utts() if aug.tables["utt2uniq"][u] == clean.utts()[0]]
    got = DataDir.load(copies).vad_scp
    assert all(got[u] == vad[aug.tables["utt2uniq"][u]] for u in got)
