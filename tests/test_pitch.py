"""Kaldi pitch (subtools/kaldi/pitch.py) and mfcc_pitch features against independent references.

**Raw pitch** ``[NCCF, pitch Hz]``: ``tests/data/pitch/reference.npz`` holds torchaudio 2.0.2's
``compute_kaldi_pitch`` (its build of Kaldi's pitch-functions.cc, made by tests/data/make_pitch_reference.sh)
on the committed wavs, for the option sets in the npz. That build has three defects, found while
writing these tests and handled as follows:

- its ``denormalize`` calls the out-of-place ``index_put`` and drops the result, so the [-1, 1] input is not
  scaled back to int16: the reference is made from int16 / 32768 (the tracker is scale invariant and a
  power-of-two scale is exact in float32);
- ``nccf-ballast`` is never passed on to Kaldi (always 7000): the ballast is checked against
  :func:`slow_nccf`, written from Kaldi's definitions;
- its ``Vector::Swap`` exchanges the tensors but not the cached data pointers that Kaldi's
  ComputeBacktraces reads and writes through, so the forward pass uses stale forward costs on every other
  frame. :func:`torchaudio_track` replicates that pass; with it our NCCF, lags, resampling, ballast, frame
  counts, recompute-frame step and traceback reproduce the reference, the pitch **exactly** (same state) and
  the NCCF within 5e-6 (observed <= 1.2e-6: float32 summation order). Our own Viterbi (Kaldi's, without the
  defect) is checked against :func:`exhaustive_track`, the search written from its definition (Kaldi's
  ``pitch_use_naive_search`` branch). After its first call the defective build frees the buffer it keeps
  reading, so the frames computed when the input is flushed are undefined unless the first call computed an
  even number of frames; the cases satisfy that (checked).

**Post-processing** (process-kaldi-pitch-feats) is checked against per-frame loops written from Kaldi's
OnlineProcessPitch formulas (tolerance 2e-5: float32 vs float64).
"""
import json
import math
import os

import numpy as np
import pytest
import soundfile

from subtools.kaldi.features import FeatureExtractor, paste_feats
from subtools.kaldi.pitch import KaldiPitch, PitchPostProcessor

DATA = os.path.join(os.path.dirname(__file__), "data", "pitch")
REFERENCE = np.load(os.path.join(DATA, "reference.npz"))
CASES = json.loads(str(REFERENCE["cases"]))
F32 = np.float32


def wave_of(name):
    wave, rate = soundfile.read(os.path.join(DATA, name), dtype="int16")
    return wave.astype(F32), rate


def torchaudio_track(pitch, nccf_pitch):
    """torchaudio 2.0.2's forward pass: buffer F is always read as the previous costs and buffer A always
    written with the new best costs, while the local cost is added to, and the renormalisation applied to,
    whichever buffer the swapped tensors currently name."""
    local = pitch.local_cost(nccf_pitch)
    num_frames, num_states = local.shape
    buffers = {"F": np.zeros(num_states, F32), "A": np.zeros(num_states, F32)}
    current, other = "F", "A"  # forward_cost_'s tensor, cur_forward_cost's tensor
    back = np.empty((num_frames, num_states), dtype=int)
    for t in range(num_frames):
        cost = pitch.transition + buffers["F"]
        back[t] = cost.argmin(axis=1)
        buffers["A"][:] = cost[np.arange(num_states), back[t]]
        buffers[other] += local[t]
        current, other = other, current
        buffers[current] -= buffers[current].min()
    return traceback(back, int(buffers[current].argmin()))


def traceback(back, state):
    path = np.empty(len(back), dtype=int)
    for t in range(len(back) - 1, -1, -1):
        path[t], state = state, back[t, state]
    return path


def exhaustive_track(local, transition):
    """Viterbi written from its definition: each state's best predecessor found by scanning every state."""
    num_frames, num_states = local.shape
    forward = np.zeros(num_states, F32)
    back = np.empty((num_frames, num_states), dtype=int)
    for t in range(num_frames):
        new = np.empty(num_states, F32)
        for i in range(num_states):
            costs = transition[i] + forward  # (i - j)^2 * penalty + previous cost, float32 as Kaldi
            back[t, i] = int(np.argmin(costs))  # the first best, as Kaldi's strict '<'
            new[i] = costs[back[t, i]] + local[t, i]
        forward = new - new.min()
    return traceback(back, int(forward.argmin()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_raw_pitch_reproduces_kaldi_pitch_functions(case):
    wav, options = CASES[case]
    wave, rate = wave_of(wav)
    pitch = KaldiPitch(options)
    assert pitch.options["sample-frequency"] == rate
    first_call_frames = pitch._chunk_plan(len(wave))[0][1]
    assert first_call_frames % 2 == 0, "the defective reference is undefined at the flushed frames"
    nccf_pitch, nccf_pov = pitch.nccf(wave)
    ours = pitch.output(nccf_pov, torchaudio_track(pitch, nccf_pitch))
    ref = REFERENCE[case]
    assert ours.shape == ref.shape == (pitch.num_frames(len(wave)), 2)
    np.testing.assert_array_equal(ours[:, 1], ref[:, 1])
    assert np.abs(ours[:, 0] - ref[:, 0]).max() <= 5e-6


def test_recompute_frame_step_is_exercised():
    """click-at-end: the held-back tail raises the signal energy by far more than 1 %, so Kaldi rescales the
    ballast NCCF of every frame; without that step the reference is not reproduced."""
    wave, _ = wave_of("click_at_end.wav")
    pitch = KaldiPitch({"recompute-frame": 0})
    nccf_pitch, nccf_pov = pitch.nccf(wave)
    no_recompute = pitch.output(nccf_pov, torchaudio_track(pitch, nccf_pitch))
    assert not np.array_equal(no_recompute[:, 1], REFERENCE["click-at-end"][:, 1])


@pytest.mark.parametrize("case", ["male", "noise-silence"])
def test_our_viterbi_is_the_exhaustive_search(case):
    wav, options = CASES[case]
    wave, _ = wave_of(wav)
    pitch = KaldiPitch(options)
    nccf_pitch, _ = pitch.nccf(wave)
    nccf_pitch = nccf_pitch[:120]
    np.testing.assert_array_equal(pitch.track(nccf_pitch), exhaustive_track(pitch.local_cost(nccf_pitch),
                                                                              pitch.transition))
    # a local cost with large jumps between frames exercises far predecessors
    rng = np.random.default_rng(0)
    jumpy = (rng.random((60, len(pitch.lags))) * 0.2 - 0.1).astype(F32)
    np.testing.assert_array_equal(pitch.track(jumpy), exhaustive_track(pitch.local_cost(jumpy), pitch.transition))


def test_viterbi_ties_go_to_the_first_state():
    """States 10 and 12 equally good on frame 0 and equally far from 11, the best on frame 1: Kaldi's strict
    '<' keeps the first, 10."""
    pitch = KaldiPitch()
    nccf = np.full((2, len(pitch.lags)), -0.5, F32)  # local cost 1 + 0.5 (1 - soft-min-f0 * lag) > 1
    nccf[0, [10, 12]] = nccf[1, 11] = 0.0  # local cost exactly 1
    local = pitch.local_cost(nccf)
    assert list(pitch.track(nccf)) == list(exhaustive_track(local, pitch.transition)) == [10, 11]


@pytest.mark.parametrize("target,rescaled", [(1.0201, False), (1.0203, True)])
def test_recompute_threshold_is_kaldis_approx_equal(target, rescaled):
    """Frames are rescaled when |old - new| > 0.01 (|old| + |new|) (Kaldi ApproxEqual, tolerance 0.01)."""
    pitch = KaldiPitch()
    nccf = np.ones((3, len(pitch.lags)), F32)
    frame_ms = np.array([1.0, 1.0, target])
    pitch._recompute_ballast(nccf, frame_ms, np.ones(3, F32), [1.0, target], np.array([0, 0, 1]))
    assert (not np.all(nccf == 1)) == rescaled


def windowed_sinc(t, cutoff, zeros):
    """Kaldi's resampling filter h(t) (resample.h): Hann-windowed sinc, support |t| < zeros / (2 cutoff)."""
    t = np.asarray(t, dtype=np.float64)
    window = np.where(np.abs(t) < zeros / (2 * cutoff), 0.5 * (1 + np.cos(2 * np.pi * cutoff / zeros * t)), 0.0)
    return 2 * cutoff * np.sinc(2 * cutoff * t) * window


def slow_nccf(wave, rate, frames, ballast_factor):
    """Ballast NCCF at the log-spaced lags for ``frames``, from Kaldi's definitions with default options,
    float64: downsampling to 4 kHz by the windowed sinc (cutoff 1000 Hz, 1 zero), the ballast from the mean
    square of the downsampled samples the first call produces (those before the last filter half width)."""
    out_rate, num_in = 4000, len(wave)
    num_out = math.ceil(num_in * out_rate / rate)  # flushed: outputs in [0, N / rate)
    taps = np.arange(-rate // 2000, rate // 2000 + 1)  # inputs within 1/2000 s
    down = np.zeros(num_out)
    for m in range(num_out):
        index = m * rate // out_rate + taps
        keep = (index >= 0) & (index < num_in)
        down[m] = np.dot(wave[index[keep]], windowed_sinc(m / out_rate - index[keep] / rate, 1000.0, 1)) / rate
    known = math.ceil((num_in - rate / 2000) * out_rate / rate)  # outputs before the held-back half width
    mean_square = np.mean(down[:known] ** 2) - np.mean(down[:known]) ** 2
    ballast = (mean_square * 100) ** 2 * ballast_factor
    first, last = math.ceil(4000 * (1 / 400 - 5 / 8000)), math.floor(4000 * (1 / 50 + 5 / 8000))
    lags = 1 / 400 * (1.005 ** np.arange(1000))
    lags = lags[lags <= 1 / 50 + 1e-9]
    rows = []
    for f in frames:
        x = down[40 * f:40 * f + 100 + last].copy()
        x -= x[:100].mean()
        head, shifted = x[:100], [x[lag:lag + 100] for lag in range(first, last + 1)]
        nccf = np.array([head @ s / math.sqrt((head @ head) * (s @ s) + ballast) for s in shifted])
        measured = np.arange(first, last + 1) / out_rate
        rows.append([nccf @ windowed_sinc(lag - measured, 2000.0, 5) / out_rate for lag in lags])
    return np.array(rows)


@pytest.mark.parametrize("ballast", [7000.0, 100.0, 0.0])
def test_ballast_nccf_follows_kaldis_definition(ballast):
    wave, rate = wave_of("female.wav")
    frames = [30, 90, 150]
    ours = KaldiPitch({"nccf-ballast": ballast}).nccf(wave)[0][frames]
    ref = slow_nccf(wave, rate, frames, ballast)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1e-3)


def slow_postprocess(raw, opts, noise):
    """process-kaldi-pitch-feats, one frame at a time from OnlineProcessPitch's formulas."""
    nccf, pitch = raw[:, 0].astype(np.float64), raw[:, 1].astype(np.float64)
    num_frames = len(raw)
    pov = [1 / (1 + math.exp(-(-5.2 + 5.4 * math.exp(7.5 * (n - 1)) + 4.8 * n - 2 * math.exp(-10 * n)
                                + 4.2 * math.exp(20 * (n - 1))))) for n in np.minimum(np.abs(nccf), 1)]
    w = opts["delta-window"]
    rows = []
    for t in range(num_frames):
        row = []
        if opts["add-pov-feature"]:
            n = min(max(nccf[t], -1), 1)
            row.append(opts["pov-scale"] * ((1.0001 - n) ** 0.15 - 1) + opts["pov-offset"])
        if opts["add-normalized-log-pitch"]:
            window = range(max(0, t - opts["normalization-left-context"]),
                           min(num_frames, t + opts["normalization-right-context"] + 1))
            mean = sum(pov[s] * math.log(pitch[s]) for s in window) / sum(pov[s] for s in window)
            row.append(opts["pitch-scale"] * (math.log(pitch[t]) - mean))
        if opts["add-delta-pitch"]:
            delta = sum(k * math.log(pitch[min(max(t + k, 0), num_frames - 1)]) for k in range(-w, w + 1))
            row.append(opts["delta-pitch-scale"] * (delta / sum(k * k for k in range(-w, w + 1)) + noise[t]))
        if opts["add-raw-log-pitch"]:
            row.append(math.log(pitch[t]))
        rows.append(row)
    return np.array([rows[max(t - opts["delay"], 0)] for t in range(num_frames + opts["delay"])])


@pytest.mark.parametrize("options", [
    {},
    {"normalization-left-context": 10, "normalization-right-context": 3, "delta-window": 1, "pov-offset": 0.5},
    {"add-pov-feature": False, "add-raw-log-pitch": True, "delay": 3, "pitch-scale": 1.5, "delta-pitch-scale": 4.0},
])
def test_postprocessing_follows_kaldis_formulas(options):
    raw = REFERENCE["male"]
    post = PitchPostProcessor(options)
    ours = post(raw, rng=np.random.default_rng(7))
    noise = np.random.default_rng(7).standard_normal(len(raw)) * post.options["delta-pitch-noise-stddev"]
    ref = slow_postprocess(raw, post.options, noise)
    assert ours.shape == ref.shape == (len(raw) + post.options["delay"], post.dim)
    assert np.abs(ours - ref).max() <= 2e-5


def test_postprocessing_noise_is_seeded_by_srand_and_the_utterance():
    raw = REFERENCE["male"]
    post = PitchPostProcessor()
    np.testing.assert_array_equal(post(raw), post(raw))  # no dependence on what ran before
    assert not np.array_equal(post(raw)[:, 2], PitchPostProcessor({"srand": 1})(raw)[:, 2])
    assert np.array_equal(post(raw)[:, :2], PitchPostProcessor({"srand": 1})(raw)[:, :2])
    quiet = PitchPostProcessor({"delta-pitch-noise-stddev": 0.0})(raw)[:, 2]
    noise_std = np.std(post(raw)[:, 2] - quiet) / post.options["delta-pitch-scale"]
    assert 0.004 < noise_std < 0.006  # Kaldi's default stddev 0.005


def mfcc_pitch_extractor():
    return FeatureExtractor.from_conf("mfcc_pitch", "conf/mfcc23.conf", "conf/pitch.conf")


def test_mfcc_pitch_is_the_mfcc_pasted_with_the_processed_pitch():
    """ASV-subtools mfcc_23_pitch: 23 MFCCs (C0 = log-energy) + POV, normalised log pitch, delta log pitch."""
    wave, _ = wave_of("male.wav")
    extractor = FeatureExtractor("mfcc_pitch", {**mfcc_pitch_extractor().options, "dither": 0.0})
    feats = extractor(wave)
    mfcc = FeatureExtractor("mfcc", extractor.options)(wave)
    pitch = PitchPostProcessor()(KaldiPitch()(wave))
    assert extractor.dim == feats.shape[1] == 26 and extractor.energy_column() == 0
    assert feats.shape[0] == min(len(mfcc), len(pitch)) == extractor.num_frames(len(wave))
    np.testing.assert_array_equal(feats[:, :23], mfcc[:len(feats)])
    np.testing.assert_array_equal(feats[:, 23:], pitch[:len(feats)])
    np.testing.assert_allclose(extractor.frame_log_energy(wave), feats[:, 0], atol=1e-3)


@pytest.mark.parametrize("num_samples", [400, 557, 558, 559, 560, 717, 719, 1000, 1597, 16000])
def test_frame_counts_follow_kaldi_and_paste_feats(num_samples):
    """Kaldi's pitch gives one frame more than its MFCC for some lengths (kaldi-asr/kaldi#4960, e.g.
    400 + 160 k - 3 samples); paste-feats keeps the shorter."""
    wave = np.random.default_rng(num_samples).standard_normal(num_samples).astype(F32) * 1000
    pitch = KaldiPitch()
    assert len(pitch(wave)) == pitch.num_frames(num_samples)
    extractor = mfcc_pitch_extractor()
    assert len(extractor(wave)) == extractor.num_frames(num_samples) == 1 + (num_samples - 400) // 160
    assert len(extractor.frame_log_energy(wave)) == extractor.num_frames(num_samples)


def test_paste_refuses_lengths_beyond_the_tolerance():
    a, b = np.zeros((10, 2), F32), np.ones((8, 3), F32)
    with pytest.raises(ValueError, match=r"lengths \[10, 7\] differ by more than 2"):
        paste_feats([a, b[:7]])
    pasted = paste_feats([a, b])
    assert pasted.shape == (8, 5) and not pasted[:, :2].any() and pasted[:, 2:].all()


@pytest.mark.parametrize("program,change", [
    ("pitch", {"min-f0": 60.0}), ("pitch", {"snip-edges": False}), ("pitch-postprocess", {"pov-scale": 1.0}),
    ("pitch-postprocess", {"srand": 3}), ("features", {"num-ceps": 20}),
])
def test_stamp_covers_every_option(program, change):
    base = mfcc_pitch_extractor()
    opts = {"features": base.options, "pitch": base.pitch.options, "pitch-postprocess": base.pitch_postprocess.options}
    opts[program] = {**opts[program], **change}
    changed = FeatureExtractor("mfcc_pitch", opts["features"], opts["pitch"], opts["pitch-postprocess"])
    assert changed.stamp() != base.stamp()
    assert FeatureExtractor("mfcc_pitch", base.options, base.pitch.options).stamp() == base.stamp()


def test_make_features_and_vad_with_mfcc_pitch(tmp_path):
    from subtools.compute_vad import run_compute_vad
    from subtools.make_features import make_features
    import kaldiio

    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"a-female {DATA}/female.wav\nb-noise {DATA}/noise_silence.wav\n")
    (data / "utt2spk").write_text("a-female a\nb-noise b\n")
    assert make_features(str(data), "mfcc_pitch", "conf/mfcc23.conf", pitch_conf="conf/pitch.conf") == {}
    assert (data / "conf" / "feat_type").read_text() == "mfcc_pitch\n"
    assert "--min-f0=50.0" in (data / "conf" / "pitch.conf").read_text().split()
    assert "--delta-pitch-scale=10.0" in (data / "conf" / "pitch_postprocess.conf").read_text().split()
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    frames = dict(line.split() for line in (data / "utt2num_frames").read_text().splitlines())
    assert {u: m.shape for u, m in feats.items()} == {u: (int(n), 26) for u, n in frames.items()}
    for source in ("feats", "audio"):  # C0 of the MFCC part, or the same raw log-energy from the audio
        vad, failed, _ = run_compute_vad(str(data), "conf/vad.conf", source=source)
        assert failed == {}
        assert {u: len(kaldiio.load_mat(e)) for u, e in vad.items()} == {u: int(n) for u, n in frames.items()}
