"""Option values Kaldi refuses are refused before any job starts, naming the conf file and line.

Each case writes a conf with one bad line (line 3, after a comment and a valid line) and runs the CLI
(make_features.py / compute_vad.py ``main``): it must exit with a message naming ``conf:3`` and the rule,
and leave no feats.scp / vad.scp / ark behind. The rules are Kaldi's asserts and KALDI_ERRs
(feature-window.cc, mel-computations.cc, feature-mfcc.cc, pitch-functions.cc, resample.cc,
voice-activity-detection.cc) plus two of ours for mfcc_pitch (the pitch's sample rate and frame shift must
be the MFCC's, or paste-feats would drop every utterance).
"""
import os
import subprocess

import numpy as np
import pytest
import soundfile

from subtools import compute_vad, make_features
from subtools.kaldi.features import FeatureExtractor
from subtools.kaldi.options import OptionError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Two 1 s utterances with fbank features (for the VAD cases)."""
    root = tmp_path_factory.mktemp("validation")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for utt in ("s1-u1", "s2-u1"):
        path = root / f"{utt}.wav"
        soundfile.write(str(path), (rng.standard_normal(16000) * 3000).astype(np.int16), 16000)
        lines.append(f"{utt} {path}\n")
    (data / "wav.scp").write_text("".join(lines))
    (data / "utt2spk").write_text("s1-u1 s1\ns2-u1 s2\n")
    make_features.make_features(str(data), "fbank", os.path.join(REPO, "conf", "fbank.conf"))
    return data


def bad_conf(tmp_path, name, line, valid="--sample-frequency=16000"):
    path = tmp_path / name
    path.write_text(f"# conf with one bad line\n{valid}\n{line}\n")
    return str(path)


def run_cli(main, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return str(info.value.code)


def fresh_data(tmp_path):
    data = tmp_path / "fresh"
    data.mkdir()
    (data / "wav.scp").write_text(f"u1 {tmp_path}/missing.wav\n")
    (data / "utt2spk").write_text("u1 u1\n")
    return data


def assert_nothing_written(data):
    assert not (data / "feats.scp").exists() and not (data / "conf").exists()
    assert not (data / "data").exists() or not any(p.endswith(".ark") for p in os.listdir(data / "data"))


FEATURE_CASES = [  # (feature type, bad line, message fragment)
    ("fbank", "--num-mel-bins=0", "at least 3 mel bins"),
    ("fbank", "--num-mel-bins=2", "at least 3 mel bins"),
    ("fbank", "--num-mel-bins=200", "some mel bin holds no FFT bin"),
    ("fbank", "--frame-length=0", "--frame-length=0 ms is under one sample"),
    ("fbank", "--frame-shift=0", "--frame-shift=0 ms is under one sample"),
    ("fbank", "--frame-shift=-10", "under one sample"),
    ("fbank", "--high-freq=9000", "resolves to 9000 Hz, outside (0, nyquist 8000]"),
    ("fbank", "--high-freq=-8000", "resolves to 0 Hz"),
    ("fbank", "--low-freq=8000", "--low-freq=8000 must be in [0, nyquist 8000)"),
    ("fbank", "--preemphasis-coefficient=1.5", "must be in [0, 1]"),
    ("fbank", "--window-type=sine", "expected one of"),
    ("fbank", "--channel=-2", "--channel=-2"),
    ("fbank", "--vtln-low=10\n--vtln-warp=0.9", "with --vtln-warp=0.9, need --low-freq 20 < --vtln-low 10"),
    ("mfcc", "--num-ceps=30", "--num-ceps=30 must be in [1, --num-mel-bins=23]"),
    ("mfcc", "--num-ceps=0", "--num-ceps=0 must be in [1,"),
]


@pytest.mark.parametrize("feat_type,line,message", FEATURE_CASES)
def test_bad_feature_option_stops_before_any_job(tmp_path, feat_type, line, message):
    conf = bad_conf(tmp_path, "feats.conf", line)
    data = fresh_data(tmp_path)
    error = run_cli(make_features.main, ["--conf", conf, feat_type, str(data)])
    assert f"{conf}:3: " in error and message in error
    assert_nothing_written(data)


def test_low_freq_against_the_resolved_high_freq(tmp_path):
    """Kaldi resolves a non-positive high-freq as nyquist + high-freq: 8000 - 1000 = 7000 <= low-freq."""
    conf = bad_conf(tmp_path, "fbank.conf", "--low-freq=7000", valid="--high-freq=-1000")
    data = fresh_data(tmp_path)
    error = run_cli(make_features.main, ["--conf", conf, "fbank", str(data)])
    assert f"{conf}:3: --low-freq=7000 must be below the high frequency 7000 Hz (--high-freq=-1000)" in error
    assert_nothing_written(data)


def test_odd_fft_length(tmp_path):
    conf = bad_conf(tmp_path, "fbank.conf", "--frame-length=25.0625", valid="--round-to-power-of-two=false")
    error = run_cli(make_features.main, ["--conf", conf, "fbank", str(fresh_data(tmp_path))])
    assert f"{conf}:3: the FFT length 401" in error and "must be even" in error


PITCH_CASES = [  # (which conf, bad line, message fragment)
    ("pitch", "--min-f0=400", "--max-f0=400 must be above --min-f0=400"),  # min-f0 set, max-f0 default
    ("pitch", "--max-f0=40", "--max-f0=40 must be above --min-f0=50"),
    ("pitch", "--min-f0=0", "--min-f0=0 must be positive"),
    ("pitch", "--delta-pitch=0", "--delta-pitch=0 must be positive"),
    ("pitch", "--lowpass-cutoff=3000", "at most half of --resample-frequency=4000"),
    ("pitch", "--resample-frequency=0", "--resample-frequency=0 must be a positive whole number"),
    ("pitch", "--frame-length=0.1", "is under one sample at --resample-frequency=4000"),
    ("pitch", "--upsample-filter-width=0", "--upsample-filter-width=0 must be positive"),
    ("pitch", "--max-f0=3000", "the first NCCF lag would be negative"),
    ("pitch", "--nccf-ballast=-1", "--nccf-ballast=-1 must be >= 0"),
    ("pitch", "--frames-per-chunk=-1", "--frames-per-chunk=-1 must be >= 0"),
    ("pitch", "--simulate-first-pass-online=true", "not supported"),
    ("pitch", "--frame-shift=5", "pitch --frame-shift=5 differs from the MFCC's 10"),
    ("pitch", "--nccf-ballast-online=true", "option --nccf-ballast-online is not supported"),
    ("post", "--delta-window=0", "--delta-window=0 must be in [1, 999]"),
    ("post", "--normalization-left-context=-1", "must be >= 0"),
    ("post", "--delay=-2", "--delay=-2 must be >= 0"),
    ("post", "--add-pov-feature=false\n--add-normalized-log-pitch=false\n--add-delta-pitch=false",
     "at least one of --add-pov-feature"),
]


@pytest.mark.parametrize("which,line,message", PITCH_CASES)
def test_bad_pitch_option_stops_before_any_job(tmp_path, which, line, message):
    valid = "--sample-frequency=16000" if which == "pitch" else "--pitch-scale=2.0"
    conf = bad_conf(tmp_path, f"{which}.conf", line, valid=valid)
    data = fresh_data(tmp_path)
    flag = "--pitch-conf" if which == "pitch" else "--pitch-postprocess-conf"
    argv = ["--conf", os.path.join(REPO, "conf", "mfcc23.conf"), flag, conf, "mfcc_pitch", str(data)]
    if which == "post":
        argv[2:2] = ["--pitch-conf", os.path.join(REPO, "conf", "pitch.conf")]
    error = run_cli(make_features.main, argv)
    assert f"{conf}:3: " in error and message in error
    assert_nothing_written(data)


def test_pitch_rate_must_be_the_mfccs_even_by_default(tmp_path):
    """An 8 kHz MFCC conf with the pitch left at Kaldi's 16 kHz default: the pitch conf is the culprit."""
    mfcc = bad_conf(tmp_path, "mfcc.conf", "--high-freq=3800", valid="--sample-frequency=8000")
    pitch = bad_conf(tmp_path, "pitch.conf", "--min-f0=60", valid="--max-f0=350")
    argv = ["--conf", mfcc, "--pitch-conf", pitch, "mfcc_pitch", str(fresh_data(tmp_path))]
    error = run_cli(make_features.main, argv)
    assert f"{pitch}: pitch --sample-frequency=16000 differs from the MFCC's 8000" in error
    assert "Kaldi's default" in error


VAD_CASES = [
    ("--vad-proportion-threshold=1.2", "--vad-proportion-threshold=1.2 must be in (0, 1)"),
    ("--vad-proportion-threshold=0", "--vad-proportion-threshold=0 must be in (0, 1)"),
    ("--vad-frames-context=-1", "--vad-frames-context=-1 must be >= 0"),
    ("--vad-energy-mean-scale=-0.5", "--vad-energy-mean-scale=-0.5 must be >= 0"),
]


@pytest.mark.parametrize("line,message", VAD_CASES)
def test_bad_vad_option_stops_before_any_job(data_dir, tmp_path, line, message):
    conf = bad_conf(tmp_path, "vad.conf", line, valid="--vad-energy-threshold=5.5")
    error = run_cli(compute_vad.main, ["--conf", conf, str(data_dir)])
    assert f"{conf}:3: " in error and message in error
    assert not (data_dir / "vad.scp").exists()
    assert not [p for p in os.listdir(data_dir / "data") if p.startswith("vad_")]
    # the same conf is valid without the bad line
    compute_vad.main(["--check-conf", "--conf", bad_conf(tmp_path, "ok.conf", "", valid="--vad-energy-threshold=5.5")])


def test_library_raises_option_errors_not_assertions():
    with pytest.raises(OptionError) as info:
        FeatureExtractor("fbank", {"num-mel-bins": 0})
    assert info.value.names == ("num-mel-bins",) and isinstance(info.value, ValueError)
    from subtools.kaldi.vad import compute_vad as vad

    with pytest.raises(OptionError, match="vad-proportion-threshold"):
        vad(np.zeros(5, np.float32), proportion_threshold=1.2)


def test_prepare_checks_the_confs_before_stage_0(tmp_path):
    conf = bad_conf(tmp_path, "pitch.conf", "--min-f0=500")
    out = tmp_path / "out"
    run = subprocess.run(["bash", "recipe/voxceleb/prepare.sh", "--data", str(out), "--feat-type", "mfcc_pitch",
                          "--pitch-conf", conf], cwd=REPO, capture_output=True, text=True)
    assert run.returncode != 0 and f"{conf}:3: --max-f0=400 must be above --min-f0=500" in run.stderr
    assert not out.exists()
