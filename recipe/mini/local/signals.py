"""Signal synthesis and channel simulation for the built-in corpus (numpy/scipy).

Every function that draws random numbers takes a ``numpy.random.Generator`` so the corpus is
reproducible. Audio arrays are 1-D float64 ``[N]`` at sample rate ``sr`` (Hz), full scale = 1.0.
"""
import numpy as np
import scipy.fft

SPEED_OF_SOUND = 343.0  # m/s
FRAME_S = 0.01  # frame length for level measurements (s)


def frame_level_db(x, sr):
    """Mean-square level of consecutive 10 ms frames in dB re full scale: ``[N // frame]``."""
    hop = int(FRAME_S * sr)
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    return 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)


def active_power(x, sr, range_db=40.0):
    """Mean power of the frames within ``range_db`` of the loudest frame (the speech part, so an
    SNR does not depend on how much silence surrounds the speech)."""
    level = frame_level_db(x, sr)
    return float(np.mean(10.0 ** (level[level > level.max() - range_db] / 10.0)))


def coloured_noise(rng, n, sr, beta, floor_hz=20.0):
    """Gaussian noise ``[n]`` with unit RMS and power spectral density proportional to
    ``1 / f**beta`` (0 white, 1 pink, 2 brown); frequencies below ``floor_hz`` are held at the
    ``floor_hz`` level so brown noise does not drift."""
    nfft = scipy.fft.next_fast_len(n)
    bins = nfft // 2 + 1
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    freqs = np.maximum(np.arange(bins) * sr / nfft, floor_hz)
    x = scipy.fft.irfft(spectrum * freqs ** (-beta / 2.0), nfft)[:n]
    return x / np.sqrt(np.mean(x ** 2))


def channel_response(rng, freqs, sr, eq_db, lowcut_hz, highcut_hz, order=4):
    """Magnitude response ``[len(freqs)]`` of a random channel: a smooth EQ curve (4 cosine terms
    on a log-frequency axis, each with a ``N(0, eq_db / 2)`` dB weight) times 4th-order
    Butterworth-shaped high-pass at ``lowcut_hz`` and low-pass at ``highcut_hz``."""
    f = np.maximum(freqs, 1.0)
    u = np.clip(np.log(f / 50.0) / np.log(sr / 2.0 / 50.0), 0.0, 1.0)
    weights = rng.normal(0.0, eq_db / 2.0, size=4)
    gain_db = sum(w * np.cos((k + 1) * np.pi * u) for k, w in enumerate(weights))
    band = 1.0 / np.sqrt((1.0 + (lowcut_hz / f) ** (2 * order)) * (1.0 + (f / highcut_hz) ** (2 * order)))
    return 10.0 ** (gain_db / 20.0) * band


def apply_response(x, sr, response, grid_points=1025):
    """Zero-phase filter ``x`` with the smooth magnitude response ``response(freqs) -> [len(freqs)]``
    (evaluated on a ``grid_points`` grid over 0..sr/2 and interpolated to the FFT bins of the
    zero-padded signal, so the short filter tails do not wrap around)."""
    nfft = scipy.fft.next_fast_len(len(x) + int(0.05 * sr))
    grid = np.linspace(0.0, sr / 2.0, grid_points)
    gains = np.interp(np.arange(nfft // 2 + 1) * sr / nfft, grid, response(grid))
    return scipy.fft.irfft(scipy.fft.rfft(x, nfft) * gains, nfft)[: len(x)]


def uniform(rng, bounds):
    """One draw from U(bounds[0], bounds[1])."""
    return float(rng.uniform(bounds[0], bounds[1]))


def apply_channel(rng, x, sr, channel):
    """Recording channel of one utterance: random EQ and band limits, additive coloured noise at a
    random SNR (re the active speech power), then a random peak level in dBFS.

    ``channel`` keys: ``eq_db``, ``lowcut_hz`` [lo, hi], ``highcut_hz`` [lo, hi], ``snr_db`` [lo, hi],
    ``noise_beta`` [lo, hi], ``peak_dbfs`` [lo, hi]. Returns float64 ``[N]`` with peak < 1.
    """
    eq_db, low, high = channel["eq_db"], uniform(rng, channel["lowcut_hz"]), uniform(rng, channel["highcut_hz"])
    high = min(high, 0.95 * sr / 2.0)
    y = apply_response(x, sr, lambda f: channel_response(rng, f, sr, eq_db, low, high))
    snr_db = uniform(rng, channel["snr_db"])
    noise = coloured_noise(rng, len(y), sr, uniform(rng, channel["noise_beta"]))
    y = y + noise * np.sqrt(active_power(y, sr) / 10.0 ** (snr_db / 10.0))
    return y * (10.0 ** (uniform(rng, channel["peak_dbfs"]) / 20.0) / np.max(np.abs(y)))


def to_int16(x):
    """float [-1, 1] -> int16 samples (rounded, clipped)."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- MUSAN-like sources

NOISE_KINDS = ("stationary", "modulated", "hum", "impulsive")


def synth_noise(rng, kind, n, sr):
    """A noise recording ``[n]`` (unit-ish level) of one of :data:`NOISE_KINDS`: stationary
    coloured noise, noise with slow amplitude swells (traffic/wind), mains hum with harmonics over
    pink noise, or random decaying bursts (knocks, clatter) over a quiet background."""
    t = np.arange(n) / sr
    base = coloured_noise(rng, n, sr, rng.uniform(0.0, 2.0))
    if kind == "stationary":
        return base
    if kind == "modulated":
        rate = rng.uniform(0.1, 2.0)
        return base * (1.0 + 0.8 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    if kind == "hum":
        mains = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 8))
        return hum + 0.3 * coloured_noise(rng, n, sr, 1.0)
    if kind == "impulsive":
        out = 0.05 * base
        for start in rng.integers(0, n, size=max(1, int(n / sr * rng.uniform(1.0, 4.0)))):
            length = min(n - start, int(rng.uniform(0.05, 0.4) * sr))
            burst = coloured_noise(rng, length, sr, rng.uniform(0.0, 1.5))
            out[start:start + length] += burst * np.exp(-np.arange(length) / (0.2 * length))
        return out
    raise ValueError(f"unknown noise kind '{kind}' (expected one of {NOISE_KINDS})")


def _note(f0, length, sr, decay_s):
    """One plucked note ``[length]``: 5 harmonics (amplitude 1/h^1.5), 5 ms attack, exponential decay."""
    t = np.arange(length) / sr
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h ** 1.5 for h in range(1, 6) if f0 * h < sr / 2)
    return tone * (1.0 - np.exp(-t / 0.005)) * np.exp(-t / decay_s)


def synth_music(rng, n, sr):
    """Music ``[n]``: a 4-chord progression in a random key and tempo (70-150 bpm), chords on every
    beat, a bass note on beats 1 and 3 and a noise hi-hat on the off-beats."""
    beat = int(sr * 60.0 / rng.uniform(70.0, 150.0))
    root = int(rng.integers(45, 58))  # MIDI note of the key
    degrees = rng.choice([0, 2, 4, 5, 7, 9], size=4, replace=True)
    degrees[0] = 0
    decay = rng.uniform(0.15, 0.6)
    length = int(5 * decay * sr)  # a note rings for 5 decay constants (-43 dB)
    notes = {}  # MIDI number -> waveform; chords repeat, so synthesise each pitch once

    def note(midi, amplitude):
        if midi not in notes:
            notes[midi] = amplitude * _note(440.0 * 2 ** ((midi - 69) / 12), length, sr, decay)
        return notes[midi]

    out = np.zeros(n + length)
    hat_len = int(0.03 * sr)
    for b, start in enumerate(range(0, n, beat)):
        degree = int(degrees[(b // 4) % 4])
        third = 3 if degree in (2, 4, 9) else 4  # ii, iii and vi are minor chords
        for interval in (0, third, 7):
            out[start:start + length] += note(root + 12 + degree + interval, 0.3)
        if b % 2 == 0:
            out[start:start + length] += note(root - 12 + degree, 0.6)
        hat = start + beat // 2
        if hat < n:
            out[hat:hat + hat_len] += 0.2 * coloured_noise(rng, hat_len, sr, 0.0) * np.exp(-np.arange(hat_len) / (0.008 * sr))
    return out[:n]


# ----------------------------------------------------------------------------- room impulse responses


def sabine_rt60(room_xyz, absorption):
    """Sabine reverberation time (s) of a shoe-box room: ``0.161 V / (S * absorption)``."""
    x, y, z = room_xyz
    return 0.161 * x * y * z / (2.0 * (x * y + y * z + z * x) * absorption)


def synth_rir(rng, sr, rt60, distance, volume):
    """Synthetic room impulse response ``[L]``: a direct-path impulse after the propagation delay
    of ``distance`` (m) followed by an exponentially decaying Gaussian tail whose energy falls by
    60 dB in ``rt60`` seconds. The direct-to-reverberant energy ratio is that of the diffuse-field
    model, ``(r_c / distance)^2`` with critical distance ``r_c = 0.057 sqrt(volume / rt60)``.
    Length ``1.2 * rt60 + 0.1`` s (tail at about -72 dB); peak (the direct path) normalised to 0.9.
    """
    delay = int(round(distance / SPEED_OF_SOUND * sr))
    tail_len = int((1.2 * rt60 + 0.1) * sr)
    t = np.arange(tail_len) / sr
    tail = rng.standard_normal(tail_len) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    tail[0] = 0.0
    critical = 0.057 * np.sqrt(volume / rt60)
    direct = np.sqrt(np.sum(tail ** 2) * (critical / distance) ** 2)
    h = np.zeros(delay + tail_len)
    h[delay:] = tail
    h[delay] = direct
    return 0.9 * h / np.max(np.abs(h))
