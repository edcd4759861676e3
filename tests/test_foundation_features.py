"""fbank/MFCC from Kaldi option files vs kaldi-native-fbank (an independent C++ port of Kaldi).

Tolerance: max abs difference <= 1e-3 on every coefficient of every frame, frames straddling
digital silence included (both libraries use float32 FFTs; observed <= 4e-4 for fbank, <= 6e-4 for
MFCC, <= 3e-5 on the straddling frames); fully silent frames sit at log(FLT_EPSILON) in both.
Our defaults are checked against values written from Kaldi's sources, and against
kaldi-native-fbank built with its own defaults (they coincide with Kaldi's except dither).
The test signals carry a noise floor 40-50 dB below the peak, as real recordings do: on noise-free
TTS output the MFCCs of nearly silent frames (peak amplitude < 100) differ by up to 3e-3, because the
two FFTs' float32 rounding in near-empty mel bins is spread over every cepstrum by the DCT and lifter.
"""
import shutil
import subprocess

import numpy as np
import pytest
import scipy.signal as ss
import torch

import kaldi_native_fbank as knf
from subtools.kaldi.features import FLT_EPSILON, FeatureExtractor

TOL = 1e-3
torch.set_num_threads(1)


def speech_like(seconds=2.0, rate=16000, seed=0):
    """Synthetic speech in int16 scale (peak 12000): a harmonic glottal-like source (1/k amplitudes)
    with gliding f0 through three all-pole formant resonators, alternating with high-passed
    fricative noise at a syllable rate, over a room-noise floor 40 dB below the peak."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 60))
    for fc, bw in [(650, 90), (1150, 110), (2500, 180)]:
        r = np.exp(-np.pi * bw / rate)
        voiced = ss.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * fc / rate), r * r], voiced)
    envelope = (np.sin(2 * np.pi * 3 * t) > -0.2).astype(float)
    fricative = ss.lfilter(*ss.butter(2, 2500, "high", fs=rate), rng.standard_normal(n))
    room = ss.lfilter([1], [1, -0.9], rng.standard_normal(n))
    y = (voiced * envelope / np.abs(voiced).max() + 0.2 * fricative * (1 - envelope) / np.abs(fricative).max()
         + 0.01 * room / room.std())
    return np.round(y / np.abs(y).max() * 12000).astype(np.float32)


def espeak(text="The quick brown fox jumps over the lazy dog.", rate=16000):
    """espeak-ng speech resampled to ``rate`` plus a noise floor, int16 scale (None if espeak-ng is absent)."""
    if shutil.which("espeak-ng") is None:
        return None
    raw = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout
    import io

    import soundfile

    wave, sr = soundfile.read(io.BytesIO(raw), dtype="int16")
    wave = ss.resample_poly(wave.astype(np.float64), rate, sr)
    room = ss.lfilter([1], [1, -0.9], np.random.default_rng(0).standard_normal(len(wave)))
    wave += 0.003 * np.abs(wave).max() * room / room.std()  # recording noise floor 50 dB below the peak
    return wave.round().astype(np.float32)


def knf_features(extractor, wave):
    """Same options through kaldi-native-fbank."""
    o = extractor.options
    if extractor.feat_type == "fbank":
        opts = knf.FbankOptions()
        opts.use_log_fbank = o["use-log-fbank"]
        opts.use_power = o["use-power"]
    else:
        opts = knf.MfccOptions()
        opts.num_ceps = o["num-ceps"]
        opts.cepstral_lifter = o["cepstral-lifter"]
    opts.use_energy = o["use-energy"]
    opts.energy_floor = o["energy-floor"]
    opts.raw_energy = o["raw-energy"]
    opts.htk_compat = o["htk-compat"]
    fo = opts.frame_opts
    fo.samp_freq = o["sample-frequency"]
    fo.frame_length_ms = o["frame-length"]
    fo.frame_shift_ms = o["frame-shift"]
    fo.dither = o["dither"]
    fo.preemph_coeff = o["preemphasis-coefficient"]
    fo.remove_dc_offset = o["remove-dc-offset"]
    fo.window_type = o["window-type"]
    fo.round_to_power_of_two = o["round-to-power-of-two"]
    fo.blackman_coeff = o["blackman-coeff"]
    fo.snip_edges = o["snip-edges"]
    mo = opts.mel_opts
    mo.num_bins = o["num-mel-bins"]
    mo.low_freq = o["low-freq"]
    mo.high_freq = o["high-freq"]
    mo.vtln_low = o["vtln-low"]
    mo.vtln_high = o["vtln-high"]
    computer = knf.OnlineFbank(opts) if extractor.feat_type == "fbank" else knf.OnlineMfcc(opts)
    computer.accept_waveform(o["sample-frequency"], wave.tolist())
    computer.input_finished()
    return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)], dtype=np.float32)


CASES = [
    ("fbank", "conf/fbank.conf", {}),
    ("mfcc", "conf/mfcc.conf", {}),
    ("fbank", "conf/fbank.conf", {"use-energy": True, "snip-edges": False}),  # + energy column, centred frames
    ("mfcc", None, {"dither": 0.0}),  # all Kaldi defaults otherwise (23 bins, 13 ceps, C0 energy)
    ("fbank", None, {"dither": 0.0, "window-type": "hamming", "use-power": False, "remove-dc-offset": False}),
]


@pytest.mark.parametrize("feat_type,conf,extra", CASES)
@pytest.mark.parametrize("signal", ["synthetic", "espeak"])
def test_matches_kaldi_native_fbank(feat_type, conf, extra, signal):
    wave = speech_like() if signal == "synthetic" else espeak()
    if wave is None:
        pytest.skip("espeak-ng not installed")
    if conf:
        base = FeatureExtractor.from_conf(feat_type, conf)
        extractor = FeatureExtractor(feat_type, {**base.options, **extra})
    else:
        extractor = FeatureExtractor(feat_type, extra)
    ours = extractor(wave)
    ref = knf_features(extractor, wave)
    assert ours.shape == ref.shape == (extractor.num_frames(len(wave)), extractor.dim)
    assert np.abs(ours - ref).max() <= TOL


def test_our_confs_are_the_intended_ones():
    fbank = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    assert (fbank.dim, fbank.sample_rate, fbank.options["dither"]) == (80, 16000, 0.0)
    assert fbank.energy_column() is None
    mfcc = FeatureExtractor.from_conf("mfcc", "conf/mfcc.conf")
    o = mfcc.options
    assert (mfcc.dim, o["num-mel-bins"], o["low-freq"], o["high-freq"], o["snip-edges"], o["dither"]) == (
        23, 40, 50.0, 7500.0, False, 0.0)
    assert mfcc.energy_column() == 0  # Kaldi default use-energy=true


# Kaldi's defaults, written from Kaldi's sources, not from our option table: FrameExtractionOptions
# (feat/feature-window.h), MelBanksOptions with the 23 bins FbankOptions/MfccOptions ask for
# (feat/mel-computations.h, feat/feature-{fbank,mfcc}.h), and the options of
# featbin/compute-{fbank,mfcc}-feats.cc (vtln-warp, subtract-mean, min-duration, channel).
KALDI_COMMON_DEFAULTS = {
    "sample-frequency": 16000.0, "frame-shift": 10.0, "frame-length": 25.0, "dither": 1.0,
    "preemphasis-coefficient": 0.97, "remove-dc-offset": True, "window-type": "povey",
    "round-to-power-of-two": True, "blackman-coeff": 0.42, "snip-edges": True,
    "num-mel-bins": 23, "low-freq": 20.0, "high-freq": 0.0, "vtln-low": 100.0, "vtln-high": -500.0,
    "energy-floor": 0.0, "raw-energy": True, "htk-compat": False,
    "vtln-warp": 1.0, "subtract-mean": False, "min-duration": 0.0, "channel": -1,
}
KALDI_DEFAULTS = {
    "fbank": {**KALDI_COMMON_DEFAULTS, "use-energy": False, "use-log-fbank": True, "use-power": True},
    "mfcc": {**KALDI_COMMON_DEFAULTS, "use-energy": True, "num-ceps": 13, "cepstral-lifter": 22.0},
}


@pytest.mark.parametrize("feat_type", ["fbank", "mfcc"])
def test_every_default_is_kaldis(feat_type):
    assert FeatureExtractor(feat_type).options == KALDI_DEFAULTS[feat_type]


def test_kaldi_native_fbank_defaults_coincide_with_kaldis_except_dither():
    """The table above, cross-checked with a second source (kaldi-native-fbank's own defaults)."""
    for feat_type, opts in (("fbank", knf.FbankOptions()), ("mfcc", knf.MfccOptions())):
        want = KALDI_DEFAULTS[feat_type]
        fo, mo = opts.frame_opts, opts.mel_opts
        got = {"sample-frequency": fo.samp_freq, "frame-shift": fo.frame_shift_ms,
               "frame-length": fo.frame_length_ms, "preemphasis-coefficient": fo.preemph_coeff,
               "remove-dc-offset": fo.remove_dc_offset, "window-type": fo.window_type,
               "round-to-power-of-two": fo.round_to_power_of_two, "blackman-coeff": fo.blackman_coeff,
               "snip-edges": fo.snip_edges, "num-mel-bins": mo.num_bins, "low-freq": mo.low_freq,
               "high-freq": mo.high_freq, "vtln-low": mo.vtln_low, "vtln-high": mo.vtln_high,
               "use-energy": opts.use_energy, "energy-floor": opts.energy_floor,
               "raw-energy": opts.raw_energy, "htk-compat": opts.htk_compat}
        if feat_type == "fbank":
            got.update({"use-log-fbank": opts.use_log_fbank, "use-power": opts.use_power})
        else:
            got.update({"num-ceps": opts.num_ceps, "cepstral-lifter": opts.cepstral_lifter})
        float32 = {k: round(v, 5) if isinstance(v, float) else v for k, v in got.items()}  # knf stores float32
        assert float32 == {k: want[k] for k in got}
        assert fo.dither == pytest.approx(3e-5) != want["dither"]  # kaldi-native-fbank's own choice


@pytest.mark.parametrize("feat_type", ["fbank", "mfcc"])
@pytest.mark.parametrize("signal", ["synthetic", "espeak"])
def test_our_defaults_match_kaldi_native_fbank_built_with_its_own_defaults(feat_type, signal):
    """Only dither is set (0 on both sides); every other option is each library's own default."""
    wave = speech_like() if signal == "synthetic" else espeak()
    if wave is None:
        pytest.skip("espeak-ng not installed")
    ours = FeatureExtractor(feat_type, {"dither": 0.0})(wave)
    opts = knf.FbankOptions() if feat_type == "fbank" else knf.MfccOptions()
    opts.frame_opts.dither = 0.0
    computer = knf.OnlineFbank(opts) if feat_type == "fbank" else knf.OnlineMfcc(opts)
    computer.accept_waveform(16000, wave.tolist())
    computer.input_finished()
    ref = np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)], dtype=np.float32)
    assert ours.shape == ref.shape == ((len(wave) - 400) // 160 + 1, 23 if feat_type == "fbank" else 13)
    assert np.abs(ours - ref).max() <= TOL


def test_unset_options_take_kaldi_defaults_not_torchaudio_defaults():
    m = FeatureExtractor("mfcc").options
    assert (m["dither"], m["energy-floor"], m["use-energy"], m["num-ceps"], m["num-mel-bins"]) == (
        1.0, 0.0, True, 13, 23)
    f = FeatureExtractor("fbank").options
    assert (f["use-energy"], f["window-type"], f["snip-edges"], f["preemphasis-coefficient"]) == (
        False, "povey", True, 0.97)


def test_digital_silence_hits_same_floor():
    pad = 4000
    wave = np.concatenate([np.zeros(pad, np.float32), speech_like(0.5), np.zeros(pad, np.float32)])
    extractor = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    ours, ref = extractor(wave), knf_features(extractor, wave)
    starts = np.arange(len(ours)) * extractor.window_shift
    ends = starts + extractor.window_size
    silent = (ends <= pad) | (starts >= len(wave) - pad)
    straddle = ((starts < pad) & (ends > pad)) | ((starts < len(wave) - pad) & (ends > len(wave) - pad))
    floor = np.log(FLT_EPSILON)
    assert silent.sum() > 40 and np.isclose(ours[silent], floor).all() and np.isclose(ref[silent], floor).all()
    assert straddle.sum() == 4 and np.abs(ours - ref).max() <= TOL


@pytest.mark.parametrize("snip_edges", [True, False])
def test_frame_log_energy_is_kaldi_mfcc_c0(snip_edges):
    wave = np.concatenate([speech_like(1.3), np.zeros(3000, np.float32)])
    mfcc = FeatureExtractor("mfcc", {"dither": 0.0, "snip-edges": snip_edges, "frame-length": 20.0})
    energy = mfcc.frame_log_energy(wave)
    assert np.abs(energy - knf_features(mfcc, wave)[:, 0]).max() <= TOL
    assert energy.min() == pytest.approx(np.log(FLT_EPSILON))  # digital silence at the floor


def test_short_wave_gives_no_frames():
    extractor = FeatureExtractor.from_conf("fbank", "conf/fbank.conf")
    assert extractor(np.ones(399, np.float32)).shape == (0, 80)
    assert extractor(np.ones(400, np.float32)).shape == (1, 80)


@pytest.mark.parametrize(
    "line,message",
    [
        ("--num-mel-bin=80", "option --num-mel-bin is not supported for fbank"),
        ("--htk-mode=true", "option --htk-mode is not supported"),
        ("--num-ceps=13", "option --num-ceps is not supported for fbank"),
        ("--num-mel-bins=eighty", "--num-mel-bins: expected int, got 'eighty'"),
        ("--snip-edges=maybe", "expected a boolean"),
        ("num-mel-bins=80", "expected '--name=value'"),
        ("--window-type=sine", "--window-type=sine: expected one of"),
    ],
)
def test_bad_conf_lines_are_refused_with_file_and_line(tmp_path, line, message):
    conf = tmp_path / "bad.conf"
    conf.write_text("# comment\n--sample-frequency=16000\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        FeatureExtractor.from_conf("fbank", str(conf))
    if "window-type" not in line:
        assert f"{conf}:3" in str(info.value)


def test_conf_syntax_underscores_comments_bare_flags(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text("--num_mel_bins=40  # trailing comment\n\n--use-energy\n--raw-energy=F\n")
    o = FeatureExtractor.from_conf("fbank", str(conf)).options
    assert (o["num-mel-bins"], o["use-energy"], o["raw-energy"]) == (40, True, False)
