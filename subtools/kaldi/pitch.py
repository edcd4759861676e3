"""Kaldi pitch features in numpy: ``compute-kaldi-pitch-feats`` and ``process-kaldi-pitch-feats``.

The tracker of Ghahremani et al. (ICASSP 2014), as Kaldi's src/feat/pitch-functions.cc computes it:

1. **Downsample** the int16-scale waveform to ``resample-frequency`` (4 kHz) with Kaldi's windowed-sinc
   LinearResample (Hann-windowed sinc, cutoff ``lowpass-cutoff``, ``lowpass-filter-width`` zeros each side).
2. **NCCF** per frame (window ``frame-length`` at 4 kHz, shift ``frame-shift``) at every integer lag
   from just under 1/``max-f0`` to just over 1/``min-f0``: the window's mean (over its first
   ``frame-length`` samples) is removed, then ``nccf = <x0, x_lag> / sqrt(e0 * e_lag + ballast)``.
   Two versions: for pitch tracking ``ballast = (mean_square * window_size)^2 * nccf-ballast`` (quiet frames
   get a low NCCF, so the track stays continuous through them), and for the output NCCF (the POV) no ballast.
3. Both are **resampled** from integer lags to log-spaced lags ``1/max-f0 * (1 + delta-pitch)^k`` (the
   Viterbi states) with Kaldi's ArbitraryResample (windowed sinc, ``upsample-filter-width`` zeros).
4. **Viterbi** over frames: local cost ``1 - nccf + soft-min-f0 * lag * nccf``, transition cost
   ``penalty-factor * (log(1 + delta-pitch) * (i - j))^2`` between states i and j, forward costs
   renormalised to a minimum of 0 each frame, best final state traced back.
5. Output per frame ``[NCCF without ballast, pitch in Hz]`` at the chosen state: ``[T, 2]`` float32.

**What we match.** Kaldi's offline ``ComputeKaldiPitch`` (the ``compute-kaldi-pitch-feats`` binary), whose
online machinery changes the result in two places, both reproduced:

- The ballast uses the mean square of the downsampled signal *seen so far*. The waveform arrives in one
  piece (or in ``frames-per-chunk`` pieces), without the last few downsampled samples (LinearResample holds
  back the filter's half width until the input is finished), then the input is flushed. So the frames
  computed before the flush use the mean square of the downsampled signal minus its tail, and the frames
  computed at the flush (the last 1-3) use the whole signal's.
- ``recompute-frame`` (500): when frame 499 is computed, or when the input ends before it, Kaldi compares
  each earlier frame's mean square with the current one; if any differs by more than 1 % (Kaldi's
  ApproxEqual with tolerance 0.01), the ballast NCCF of frames 0..499 is rescaled by
  ``sqrt((old_ballast + avg_norm_prod) / (new_ballast + avg_norm_prod))`` (avg_norm_prod: the frame's mean
  ``e0 * e_lag`` over lags) and their Viterbi redone. Offline this rarely triggers (the held-back tail is a
  few samples), but it can for short utterances or with ``frames-per-chunk``.

Our Viterbi picks, for each state, the first best predecessor over all states (Kaldi's "naive" search, whose
result its faster bound-refining search reproduces), with the costs in float32 as Kaldi forms them;
``local cost`` is rounded as ``(1 - nccf) + (soft-min-f0 * lag) * nccf``. Not supported (an error):
``simulate-first-pass-online=true`` (the features an online decoder sees on its first pass; the default,
false, gives the final features) and Kaldi's debug option ``nccf-ballast-online``. ``max-frames-latency``
only affects the first-pass features, so it is accepted and has no effect.

**Post-processing** (:class:`PitchPostProcessor`, ``process-kaldi-pitch-feats``; OnlineProcessPitch): per frame,
in this order, those selected by the add-* options:

- POV feature ``pov-scale * ((1.0001 - nccf)^0.15 - 1) + pov-offset`` (nccf clipped to [-1, 1]);
- normalised log pitch ``pitch-scale * (log f0 - weighted mean of log f0)`` over the window
  ``[t - normalization-left-context, t + normalization-right-context]`` (clipped to the utterance), weights
  = Kaldi's probability of voicing ``1 / (1 + exp(-r(|nccf|)))``,
  ``r(n) = -5.2 + 5.4 e^{7.5 (n - 1)} + 4.8 n - 2 e^{-10 n} + 4.2 e^{20 (n - 1)}``;
- delta log pitch ``delta-pitch-scale * (delta(log f0) + noise)``: Kaldi's delta window (``delta-window``,
  weights ``k / sum k^2``, edge frames repeated) plus Gaussian noise of std ``delta-pitch-noise-stddev``
  (it removes the peaks the discrete lags cause). Kaldi draws the noise from the C library's ``rand()``
  seeded once per process by ``--srand``, so its values depend on the job split; ours come from numpy,
  seeded per utterance from ``--srand`` and the utterance's raw pitch, so the features do not;
- raw log pitch.

``delay`` shifts the output by that many frames (repeating the first), adding as many frames.
Output ``[T + delay, D]`` float32.
"""
import math
import zlib

import numpy as np

from subtools.kaldi.options import OptionError

# compute-kaldi-pitch-feats options (Kaldi PitchExtractionOptions): name -> (type, Kaldi default)
PITCH_OPTIONS = {
    "sample-frequency": (float, 16000.0),
    "frame-length": (float, 25.0),
    "frame-shift": (float, 10.0),
    "preemphasis-coefficient": (float, 0.0),
    "min-f0": (float, 50.0),
    "max-f0": (float, 400.0),
    "soft-min-f0": (float, 10.0),
    "penalty-factor": (float, 0.1),
    "lowpass-cutoff": (float, 1000.0),
    "resample-frequency": (float, 4000.0),
    "delta-pitch": (float, 0.005),
    "nccf-ballast": (float, 7000.0),
    "lowpass-filter-width": (int, 1),
    "upsample-filter-width": (int, 5),
    "max-frames-latency": (int, 0),
    "frames-per-chunk": (int, 0),
    "simulate-first-pass-online": (bool, False),
    "recompute-frame": (int, 500),
    "snip-edges": (bool, True),
}
# process-kaldi-pitch-feats options (Kaldi ProcessPitchOptions, plus the binary's --srand)
POSTPROCESS_OPTIONS = {
    "pitch-scale": (float, 2.0),
    "pov-scale": (float, 2.0),
    "pov-offset": (float, 0.0),
    "delta-pitch-scale": (float, 10.0),
    "delta-pitch-noise-stddev": (float, 0.005),
    "normalization-left-context": (int, 75),
    "normalization-right-context": (int, 75),
    "delta-window": (int, 2),
    "delay": (int, 0),
    "add-pov-feature": (bool, True),
    "add-normalized-log-pitch": (bool, True),
    "add-delta-pitch": (bool, True),
    "add-raw-log-pitch": (bool, False),
    "srand": (int, 0),
}
F32 = np.float32
_BLOCK_FRAMES = 500  # frames per NCCF block (bounds memory on long recordings)


def resolve(table, options, program):
    """Kaldi defaults of ``table`` updated with ``options`` ({name: value}); OptionError for unknown names."""
    unknown = sorted(set(options or {}) - set(table))
    if unknown:
        raise OptionError(unknown, f"unknown option(s) {' '.join('--' + n for n in unknown)}", program)
    return {**{name: default for name, (_, default) in table.items()}, **(options or {})}


def check_pitch_options(o):
    """Refuse what Kaldi's pitch code asserts on or cannot run (OptionError naming the options)."""
    def refuse(names, message):
        raise OptionError(names, message, "pitch")

    rate, resample = o["sample-frequency"], o["resample-frequency"]
    if rate <= 0 or rate != int(rate):
        refuse(["sample-frequency"], f"--sample-frequency={rate:g} must be a positive whole number of Hz")
    if resample <= 0 or resample != int(resample):
        refuse(["resample-frequency"], f"--resample-frequency={resample:g} must be a positive whole number of Hz")
    if int(resample * o["frame-shift"] / 1000.0) < 1:
        refuse(["frame-shift"], f"--frame-shift={o['frame-shift']:g} ms is under one sample at "
               f"--resample-frequency={resample:g}")
    if int(resample * o["frame-length"] / 1000.0) < 1:
        refuse(["frame-length"], f"--frame-length={o['frame-length']:g} ms is under one sample at "
               f"--resample-frequency={resample:g}")
    if not 0 < o["lowpass-cutoff"] or 2 * o["lowpass-cutoff"] > min(rate, resample):
        refuse(["lowpass-cutoff", "resample-frequency", "sample-frequency"],
               f"--lowpass-cutoff={o['lowpass-cutoff']:g} must be positive and at most half of "
               f"--resample-frequency={resample:g} and of --sample-frequency={rate:g}")
    for name in ("lowpass-filter-width", "upsample-filter-width"):
        if o[name] <= 0:
            refuse([name], f"--{name}={o[name]} must be positive")
    if o["min-f0"] <= 0:
        refuse(["min-f0"], f"--min-f0={o['min-f0']:g} must be positive")
    if o["max-f0"] <= o["min-f0"]:
        refuse(["max-f0", "min-f0"], f"--max-f0={o['max-f0']:g} must be above --min-f0={o['min-f0']:g}")
    if o["delta-pitch"] <= 0:
        refuse(["delta-pitch"], f"--delta-pitch={o['delta-pitch']:g} must be positive")
    if o["nccf-ballast"] < 0:
        refuse(["nccf-ballast"], f"--nccf-ballast={o['nccf-ballast']:g} must be >= 0")
    if first_nccf_lag(o) < 0:
        refuse(["max-f0", "upsample-filter-width", "resample-frequency"],
               f"--max-f0={o['max-f0']:g} is too high for --resample-frequency={resample:g} with "
               f"--upsample-filter-width={o['upsample-filter-width']}: the first NCCF lag would be negative")
    if o["frames-per-chunk"] < 0:
        refuse(["frames-per-chunk"], f"--frames-per-chunk={o['frames-per-chunk']} must be >= 0")
    if o["simulate-first-pass-online"]:
        refuse(["simulate-first-pass-online"], "--simulate-first-pass-online=true is not supported (it emulates "
               "an online decoder's first pass; the default gives the final features)")


def check_postprocess_options(o):
    """Refuse what Kaldi's OnlineProcessPitch / DeltaFeatures assert on (OptionError)."""
    def refuse(names, message):
        raise OptionError(names, message, "pitch-postprocess")

    adds = ["add-pov-feature", "add-normalized-log-pitch", "add-delta-pitch", "add-raw-log-pitch"]
    if not any(o[name] for name in adds):
        refuse(adds, "at least one of " + ", ".join("--" + n for n in adds) + " must be true")
    if o["add-delta-pitch"] and not 0 < o["delta-window"] < 1000:
        refuse(["delta-window"], f"--delta-window={o['delta-window']} must be in [1, 999]")
    for name in ("normalization-left-context", "normalization-right-context", "delay"):
        if o[name] < 0:
            refuse([name], f"--{name}={o[name]} must be >= 0")


def first_nccf_lag(o):
    """First integer lag (at the resampled rate) where Kaldi measures the NCCF."""
    return math.ceil(o["resample-frequency"] * (1.0 / o["max-f0"] - o["upsample-filter-width"]
                                                / (2.0 * o["resample-frequency"])))


def _filter_func(t, cutoff, num_zeros):
    """Kaldi's resampling filter (Hann-windowed sinc) at float32 times ``t`` [s] -> float32, rounded as Kaldi."""
    t64 = np.asarray(t, dtype=F32).astype(np.float64)
    c = float(F32(cutoff))
    window = np.where(np.abs(t64) < num_zeros / (2.0 * c), 0.5 * (1 + np.cos(2 * np.pi * c / num_zeros * t64)), 0.0)
    safe_t = np.where(t64 == 0, 1.0, t64)
    sinc = np.where(t64 == 0, 2 * c, np.sin(2 * np.pi * c * t64) / (np.pi * safe_t))
    return sinc.astype(F32) * window.astype(F32)


class LinearResampler:
    """Kaldi LinearResample (feat/resample.cc) between integer rates, whole signal at once.

    ``resample(x)`` equals Kaldi's streaming output over all calls (input zero outside [0, N)).
    ``num_output_samples(n, flush)``: Kaldi's count after ``n`` input samples (``flush`` = input finished;
    otherwise the last filter half width is held back).
    """

    def __init__(self, rate_in, rate_out, cutoff, num_zeros):
        self.rate_in, self.rate_out, self.num_zeros = int(rate_in), int(rate_out), int(num_zeros)
        self.cutoff = F32(cutoff)
        base = math.gcd(self.rate_in, self.rate_out)
        self.in_unit, self.out_unit = self.rate_in // base, self.rate_out // base
        width = num_zeros / (2.0 * float(self.cutoff))
        self.first_index, self.weights = [], []
        for i in range(self.out_unit):  # one filter per output phase
            out_t = i / self.rate_out
            first = math.ceil((out_t - width) * self.rate_in)
            last = math.floor((out_t + width) * self.rate_in)
            delta_t = np.arange(first, last + 1) / self.rate_in - out_t
            self.first_index.append(first)
            self.weights.append((_filter_func(delta_t, self.cutoff, num_zeros) / F32(self.rate_in)).astype(np.float64))

    def num_output_samples(self, num_in, flush):
        tick_freq = self.rate_in * self.rate_out // math.gcd(self.rate_in, self.rate_out)
        ticks = num_in * (tick_freq // self.rate_in)
        if not flush:
            ticks -= int(math.floor(F32(self.num_zeros / (2.0 * float(self.cutoff))) * F32(tick_freq)))
        if ticks <= 0:
            return 0
        per_output = tick_freq // self.rate_out
        last = ticks // per_output
        if last * per_output == ticks:
            last -= 1
        return last + 1

    def resample(self, x):
        """float32 ``[N]`` -> float32 ``[num_output_samples(N, flush=True)]``."""
        num_out = self.num_output_samples(len(x), flush=True)
        out = np.zeros(num_out, dtype=F32)
        if num_out == 0:
            return out
        lo = max(0, -min(self.first_index))
        counts = [len(range(phase, num_out, self.out_unit)) for phase in range(self.out_unit)]
        reach = max(first + self.in_unit * (count - 1) + len(w)
                    for first, w, count in zip(self.first_index, self.weights, counts))
        padded = np.zeros(lo + max(len(x), reach))
        padded[lo:lo + len(x)] = x
        for phase, (first, weights, count) in enumerate(zip(self.first_index, self.weights, counts)):
            view = np.lib.stride_tricks.sliding_window_view(padded, len(weights))
            out[phase::self.out_unit] = (view[lo + first::self.in_unit][:count] @ weights).astype(F32)
        return out


class KaldiPitch:
    """``compute-kaldi-pitch-feats`` with fixed options: float32 ``[N]`` int16-scale wave -> ``[T, 2]``.

    Columns: NCCF (no ballast) and pitch [Hz]. Build once (lags, filters and the transition-cost matrix are
    precomputed); ``options``: {Kaldi name: value}, Kaldi defaults for the rest (OptionError if out of range).
    """

    def __init__(self, options=None):
        o = self.options = resolve(PITCH_OPTIONS, options, "pitch")
        check_pitch_options(o)
        self.window = int(F32(o["resample-frequency"]) * F32(o["frame-length"]) / 1000.0)
        self.shift = int(F32(o["resample-frequency"]) * F32(o["frame-shift"]) / 1000.0)
        self.resampler = LinearResampler(o["sample-frequency"], o["resample-frequency"],
                                         o["lowpass-cutoff"], o["lowpass-filter-width"])
        resample = float(F32(o["resample-frequency"]))
        upsample_width = o["upsample-filter-width"] / (2.0 * resample)
        self.first_lag = math.ceil(resample * (1.0 / float(F32(o["max-f0"])) - upsample_width))
        self.last_lag = math.floor(resample * (1.0 / float(F32(o["min-f0"])) + upsample_width))
        self.full_window = self.window + self.last_lag
        self.lags = self._select_lags()
        self.nccf_resampling = self._lag_resampling_matrix(resample)
        num_states = len(self.lags)
        factor = F32(F32(math.log(1.0 + float(F32(o["delta-pitch"]))) ** 2) * F32(o["penalty-factor"]))
        steps = np.arange(num_states)
        self.transition = ((steps[None, :] - steps[:, None]) ** 2).astype(F32) * factor  # [state, previous]
        self.soft_lags = F32(o["soft-min-f0"]) * self.lags
        self.ballast = float(F32(o["nccf-ballast"]))

    def _select_lags(self):
        """Kaldi SelectLags: 1/max-f0 times powers of (1 + delta-pitch) up to 1/min-f0, in float32 steps."""
        o = self.options
        lag, last, ratio = F32(1.0 / float(F32(o["max-f0"]))), F32(1.0 / float(F32(o["min-f0"]))), \
            1.0 + float(F32(o["delta-pitch"]))
        lags = []
        while lag <= last:  # a few hundred steps, once per extractor
            lags.append(lag)
            lag = F32(float(lag) * ratio)
        return np.array(lags, dtype=F32)

    def _lag_resampling_matrix(self, resample):
        """Kaldi ArbitraryResample from the measured integer lags to ``self.lags``: ``[num_measured, states]``."""
        o = self.options
        num_measured = self.last_lag + 1 - self.first_lag
        cutoff, zeros = F32(resample * 0.5), o["upsample-filter-width"]
        points = self.lags + F32(-self.first_lag / F32(resample))
        width = F32(zeros / (2.0 * float(cutoff)))
        rate = F32(resample)
        lo = np.maximum(np.ceil(rate * (points - width)), 0).astype(int)
        hi = np.minimum(np.floor(rate * (points + width)), num_measured - 1).astype(int)
        matrix = np.zeros((num_measured, len(points)), dtype=np.float64)
        for state, (first, last) in enumerate(zip(lo, hi)):  # once per extractor
            index = np.arange(first, last + 1)
            delta_t = points[state] - (index / rate).astype(F32)
            matrix[index, state] = _filter_func(delta_t, cutoff, zeros) / rate
        return matrix

    def _frames_available(self, num_samples, finished):
        """Kaldi NumFramesAvailable after ``num_samples`` downsampled samples."""
        length = self.window if finished else self.full_window
        if num_samples < length:
            return 0
        if self.options["snip-edges"]:
            return (num_samples - length) // self.shift + 1
        if finished:
            return int(F32(F32(num_samples) / F32(self.shift)) + F32(0.5))
        return int(F32(F32(num_samples - length // 2) / F32(self.shift)) + F32(0.5))

    def num_frames(self, num_samples):
        """Frames output for a waveform of ``num_samples`` samples."""
        return self._frames_available(self.resampler.num_output_samples(num_samples, True), True)

    def _chunk_plan(self, num_in):
        """(downsampled samples known, frames computed) after each AcceptWaveform call, flush last."""
        step = int(F32(self.options["frames-per-chunk"]) * F32(self.options["sample-frequency"])
                   * F32(self.options["frame-shift"]) / F32(1000.0))
        ends = list(range(step, num_in, step)) + [num_in] if step > 0 else [num_in]
        known = [self.resampler.num_output_samples(end, False) for end in ends]
        plan = [(n, self._frames_available(n, False)) for n in known]
        total = self.resampler.num_output_samples(num_in, True)
        return plan + [(total, self._frames_available(total, True))]

    def __call__(self, wave):
        nccf_pitch, nccf_pov = self.nccf(wave)
        return self.output(nccf_pov, self.track(nccf_pitch))

    def nccf(self, wave):
        """The Viterbi's inputs: ballast NCCF at the log-spaced lags ``[T, states]`` float32 (ballast rescaled
        as Kaldi's recompute-frame step does) and the NCCF without ballast at the integer lags ``[T, lags]``."""
        wave = np.asarray(wave, dtype=F32)
        if wave.ndim != 1:
            raise ValueError(f"pitch: expected a waveform [N], got shape {wave.shape}")
        down = self.resampler.resample(wave)
        plan = self._chunk_plan(len(wave))
        num_frames = plan[-1][1]
        if num_frames == 0:
            return np.zeros((0, len(self.lags)), dtype=F32), np.zeros((0, self.last_lag + 1 - self.first_lag))
        # mean square of the downsampled signal known when each frame was computed (one entry per call)
        csum = np.concatenate([[0.0], np.cumsum(down, dtype=np.float64)])
        csq = np.concatenate([[0.0], np.cumsum(down.astype(np.float64) ** 2)])
        frame_ms, call_of_frame, done, call_ms = np.empty(num_frames), np.empty(num_frames, dtype=int), 0, []
        for call, (known, frames) in enumerate(plan):
            with np.errstate(invalid="ignore", divide="ignore"):
                call_ms.append(csq[known] / known - (csum[known] / known) ** 2)
            frame_ms[done:frames], call_of_frame[done:frames] = call_ms[-1], call
            done = max(done, frames)
        ballast = ((frame_ms * self.window) ** 2 * self.ballast).astype(F32)
        nccf_pitch, nccf_pov, avg_norm_prod = self._correlations(down, num_frames, ballast)
        self._recompute_ballast(nccf_pitch, frame_ms, avg_norm_prod, call_ms, call_of_frame)
        return nccf_pitch, nccf_pov

    def local_cost(self, nccf_pitch):
        """Viterbi local cost ``1 - nccf + soft-min-f0 * lag * nccf`` ``[T, states]`` float32."""
        return (F32(1) - nccf_pitch) + self.soft_lags * nccf_pitch

    def output(self, nccf_pov, states):
        """``[T, 2]``: the no-ballast NCCF resampled at each frame's state, and that state's pitch [Hz]."""
        pov_at_state = np.einsum("tl,lt->t", nccf_pov, self.nccf_resampling[:, states]).astype(F32)
        pitch = (1.0 / self.lags[states].astype(np.float64)).astype(F32)
        return np.stack([pov_at_state, pitch], axis=1)

    def _correlations(self, down, num_frames, ballast):
        """Per frame: resampled ballast NCCF ``[T, states]`` f32, NCCF without ballast at the measured lags
        ``[T, lags]`` f64, and mean ``e0 * e_lag`` ``[T]`` f32."""
        o = self.options
        frames = np.arange(num_frames)
        if o["snip-edges"]:
            starts = frames * self.shift
        else:
            starts = ((frames + 0.5) * self.shift).astype(np.int64) - self.full_window // 2
        pad = max(0, -int(starts.min()))
        padded = np.zeros(pad + max(len(down), int(starts.max()) + self.full_window) + 1)
        padded[pad:pad + len(down)] = down
        pitch_rows, pov_rows, norm_rows = [], [], []
        for block in range(0, num_frames, _BLOCK_FRAMES):
            rows = starts[block:block + _BLOCK_FRAMES, None] + pad + np.arange(self.full_window)
            x = padded[rows]
            if o["preemphasis-coefficient"] != 0:
                c = float(F32(o["preemphasis-coefficient"]))
                x = np.concatenate([x[:, :1] * (1 - c), x[:, 1:] - c * x[:, :-1]], axis=1)
            x = x - x[:, :self.window].mean(axis=1, keepdims=True)
            head = x[:, :self.window]
            shifted = np.lib.stride_tricks.sliding_window_view(x, self.window, axis=1)[:, self.first_lag:]
            inner = np.einsum("tw,tlw->tl", head, shifted).astype(F32)
            norm_prod = (np.einsum("tw,tw->t", head, head).astype(F32)[:, None]
                         * np.einsum("tlw,tlw->tl", shifted, shifted).astype(F32))
            pitch_rows.append(_nccf(inner, norm_prod + ballast[block:block + _BLOCK_FRAMES, None]))
            pov_rows.append(_nccf(inner, norm_prod))
            norm_rows.append(norm_prod.mean(axis=1, dtype=np.float64).astype(F32))
        nccf_pitch = (np.concatenate(pitch_rows).astype(np.float64) @ self.nccf_resampling).astype(F32)
        return nccf_pitch, np.concatenate(pov_rows).astype(np.float64), np.concatenate(norm_rows)

    def _recompute_ballast(self, nccf_pitch, frame_ms, avg_norm_prod, call_ms, call_of_frame):
        """Kaldi RecomputeBacktraces: rescale frames < recompute-frame to the later signal energy (in place)."""
        recompute, num_frames = self.options["recompute-frame"], len(frame_ms)
        if recompute <= 0:
            return
        count = min(recompute, num_frames)
        # the energy known when frame recompute-1 was computed, or at the end when the input is shorter
        target = F32(call_ms[call_of_frame[recompute - 1]] if num_frames >= recompute else call_ms[-1])
        old = frame_ms[:count].astype(F32)
        differs = np.abs(old - target) > F32(0.01) * (np.abs(old) + np.abs(target))
        if not differs.any():
            return
        ballast_of = lambda ms: ((ms * F32(self.window)).astype(np.float64) ** 2 * self.ballast).astype(F32)
        avg = avg_norm_prod[:count]
        scale = np.sqrt(((ballast_of(old) + avg) / (ballast_of(np.full(count, target)) + avg)).astype(np.float64))
        nccf_pitch[:count] *= scale.astype(F32)[:, None]

    def track(self, nccf_pitch):
        """Viterbi best state per frame ``[T]`` (see the module docstring); per-frame loop, vectorised over states."""
        num_frames, num_states = nccf_pitch.shape
        local_cost = self.local_cost(nccf_pitch)
        back = np.empty((num_frames, num_states), dtype=np.int16 if num_states < 2 ** 15 else np.int32)
        forward = np.zeros(num_states, dtype=F32)
        cost = np.empty((num_states, num_states), dtype=F32)
        states = np.arange(num_states)
        for t in range(num_frames):
            np.add(self.transition, forward, out=cost)
            best = cost.argmin(axis=1)
            forward = cost[states, best] + local_cost[t]
            forward -= forward.min()
            back[t] = best
        path = np.empty(num_frames, dtype=np.intp)
        state = int(forward.argmin())
        for t in range(num_frames - 1, -1, -1):  # traceback: one scalar step per frame
            path[t] = state
            state = back[t, state]
        return path


def _nccf(inner, energy):
    """Kaldi ComputeNccf: ``inner / sqrt(energy)``, 0 where the energy is 0 (float32)."""
    denominator = np.sqrt(energy.astype(np.float64)).astype(F32)
    return np.divide(inner, denominator, out=np.zeros_like(inner), where=denominator != 0)


def nccf_to_pov_feature(nccf):
    """Kaldi NccfToPovFeature: ``(1.0001 - n)^0.15 - 1`` with n clipped to [-1, 1] (float32)."""
    n = np.clip(np.asarray(nccf, dtype=F32), -1, 1).astype(np.float64)
    return ((1.0001 - n) ** 0.15 - 1.0).astype(F32)


def nccf_to_pov(nccf):
    """Kaldi NccfToPov: probability of voicing from the NCCF (float32)."""
    n = np.minimum(np.abs(np.asarray(nccf, dtype=F32)), 1).astype(np.float64)
    r = (-5.2 + 5.4 * np.exp(7.5 * (n - 1.0)) + 4.8 * n - 2.0 * np.exp(-10.0 * n)
         + 4.2 * np.exp(20.0 * (n - 1.0))).astype(F32)
    return (1.0 / (1 + np.exp(-1.0 * r.astype(np.float64)))).astype(F32)


class PitchPostProcessor:
    """``process-kaldi-pitch-feats`` with fixed options: ``[T, 2]`` (NCCF, pitch Hz) -> ``[T + delay, dim]``."""

    def __init__(self, options=None):
        self.options = resolve(POSTPROCESS_OPTIONS, options, "pitch-postprocess")
        check_postprocess_options(self.options)
        o = self.options
        self.dim = sum(bool(o[n]) for n in ("add-pov-feature", "add-normalized-log-pitch", "add-delta-pitch",
                                             "add-raw-log-pitch"))

    def default_rng(self, raw):
        """The noise generator for one utterance: seeded by ``--srand`` and the utterance's raw pitch."""
        return np.random.default_rng([self.options["srand"], zlib.crc32(np.ascontiguousarray(raw).tobytes())])

    def __call__(self, raw, rng=None):
        o = self.options
        raw = np.asarray(raw, dtype=F32)
        num_frames = raw.shape[0]
        if num_frames == 0:
            return np.zeros((0, self.dim), dtype=F32)
        nccf, log_pitch = raw[:, 0], np.log(raw[:, 1])
        columns = []
        if o["add-pov-feature"]:
            columns.append(F32(o["pov-scale"]) * nccf_to_pov_feature(nccf) + F32(o["pov-offset"]))
        if o["add-normalized-log-pitch"]:
            columns.append(self._normalized_log_pitch(nccf, log_pitch))
        if o["add-delta-pitch"]:
            rng = self.default_rng(raw) if rng is None else rng
            noise = (rng.standard_normal(num_frames) * o["delta-pitch-noise-stddev"]).astype(F32)
            columns.append((self._delta(log_pitch) + noise) * F32(o["delta-pitch-scale"]))
        if o["add-raw-log-pitch"]:
            columns.append(log_pitch)
        frames = np.maximum(np.arange(num_frames + o["delay"]) - o["delay"], 0)
        return np.stack(columns, axis=1)[frames]

    def _normalized_log_pitch(self, nccf, log_pitch):
        """``pitch-scale * (log f0 - POV-weighted moving mean)`` ``[T]`` float32."""
        o = self.options
        pov = nccf_to_pov(nccf)
        sum_pov = np.concatenate([[0.0], np.cumsum(pov, dtype=np.float64)])
        sum_weighted = np.concatenate([[0.0], np.cumsum(pov * log_pitch, dtype=np.float64)])
        t = np.arange(len(nccf))
        begin = np.maximum(t - o["normalization-left-context"], 0)
        end = np.minimum(t + o["normalization-right-context"] + 1, len(nccf))
        mean = ((sum_weighted[end] - sum_weighted[begin]) / (sum_pov[end] - sum_pov[begin])).astype(F32)
        return (log_pitch - mean) * F32(o["pitch-scale"])

    def _delta(self, x):
        """Kaldi ComputeDeltas (order 1, ``delta-window`` w): ``sum_k k x[t+k] / sum_k k^2``, edges repeated."""
        w = self.options["delta-window"]
        scale = F32(1.0 / float(sum(k * k for k in range(-w, w + 1))))
        t = np.arange(len(x))
        out = np.zeros(len(x), dtype=F32)
        for k in range(-w, w + 1):  # 2w+1 vector steps, in Kaldi's order
            if k:
                out += (F32(k) * scale) * x[np.clip(t + k, 0, len(x) - 1)]
        return out
