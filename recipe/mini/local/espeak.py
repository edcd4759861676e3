"""espeak-ng front end: check the installation, synthesise a batch of sentences in one call.

One ``espeak-ng`` process per batch: the sentences are sent as SSML, each in its own
``<prosody>`` element and separated by a long ``<break>``; the output (22.05 kHz, 16 bit) is
split at those breaks (the only silences of >= 1 s: espeak's own pauses stay below 0.8 s even at
slow rates). If the number of pieces does not match, the batch is synthesised one sentence per
call instead, so the result never depends on the split heuristics. Each piece is trimmed to its
speech (frames above -60 dBFS) and resampled to the target rate with ``scipy.signal.resample_poly``.
"""
import fractions
import io
import shutil
import subprocess
from xml.sax.saxutils import escape

import numpy as np
import scipy.signal
import soundfile as sf

from recipe.mini.local.signals import FRAME_S, frame_level_db

ESPEAK = "espeak-ng"
INSTALL_HINT = "sudo apt-get install -y espeak-ng"
BREAK_S = 1.5  # silence inserted between the sentences of a batch
SPLIT_MIN_S = 1.0  # a silent run at least this long is a sentence boundary
SILENCE_DB = -60.0  # frame level (dBFS) below which a 10 ms frame is silent


class EspeakError(RuntimeError):
    """espeak-ng missing, a voice missing, or a synthesis call failed."""


def require_espeak(accents, variants):
    """Raise :class:`EspeakError` (with the install command) unless espeak-ng is on PATH and knows
    every accent (``--voices=en`` language column) and variant (``--voices=variant`` file name)."""
    if shutil.which(ESPEAK) is None:
        raise EspeakError(f"{ESPEAK} not found on PATH; the built-in corpus needs it: run `{INSTALL_HINT}`")
    languages = {line.split()[1] for line in _list_voices("en")[1:]}
    files = {line.split(None, 4)[4].split("!v/", 1)[-1].rsplit("(", 1)[0].strip() for line in _list_voices("variant")[1:]}
    missing = [f"accent '{a}'" for a in accents if a not in languages]
    missing += [f"variant '{v}'" for v in variants if v not in files]
    if missing:
        raise EspeakError(f"{ESPEAK} lacks {', '.join(missing)} (check `{ESPEAK} --voices=en` and "
                          f"`{ESPEAK} --voices=variant`; the corpus config lists the voices it uses)")


def _list_voices(which):
    out = subprocess.run([ESPEAK, f"--voices={which}"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _run(voice, pitch, rate, ssml):
    """Synthesise SSML, return (float64 waveform [N], sample rate)."""
    cmd = [ESPEAK, "-m", "-v", voice, "-p", str(pitch), "-s", str(rate), "--stdout", ssml]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise EspeakError(f"{ESPEAK} -v {voice} failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    wave, sr = sf.read(io.BytesIO(proc.stdout), dtype="float64")
    return wave, sr


def _prosody(sentence):
    text, rate_scale, pitch_scale = sentence
    return (f'<prosody rate="{100 * rate_scale:.0f}%" pitch="{100 * (pitch_scale - 1):+.0f}%">'
            f"{escape(text)}</prosody>")


def _silent_runs(wave, sr):
    """(start, end) sample indices of the runs of silent frames lasting >= SPLIT_MIN_S."""
    silent = np.concatenate([[False], frame_level_db(wave, sr) < SILENCE_DB, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    hop = int(FRAME_S * sr)
    return [(s * hop, e * hop) for s, e in zip(edges[::2], edges[1::2]) if (e - s) * FRAME_S >= SPLIT_MIN_S]


def _trim(wave, sr):
    """Cut leading/trailing silent frames (keeping one 10 ms frame of margin each side)."""
    hop = int(FRAME_S * sr)
    voiced = np.flatnonzero(frame_level_db(wave, sr) >= SILENCE_DB)
    if len(voiced) == 0:
        raise EspeakError("espeak-ng produced a silent sentence")
    return wave[max(0, (voiced[0] - 1) * hop):(voiced[-1] + 2) * hop]


def synthesize(voice, pitch, rate, sentences, sample_rate):
    """Speak ``sentences`` = [(text, rate_scale, pitch_scale)] with espeak-ng voice ``voice``
    (e.g. ``en-gb-scotland+f2``), base pitch ``pitch`` (0-99) and rate ``rate`` (words/min).

    Returns one trimmed float64 waveform ``[N_i]`` at ``sample_rate`` per sentence.
    """
    pause = f'<break time="{int(BREAK_S * 1000)}ms"/>'
    ssml = "<speak>" + pause.join(map(_prosody, sentences)) + "</speak>"
    wave, sr = _run(voice, pitch, rate, ssml)
    runs = _silent_runs(wave, sr)
    if len(runs) == len(sentences) - 1:
        cuts = [0] + [(s + e) // 2 for s, e in runs] + [len(wave)]
        pieces = [wave[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    else:  # unexpected pauses: one call per sentence
        pieces = [_run(voice, pitch, rate, f"<speak>{_prosody(s)}</speak>")[0] for s in sentences]
    ratio = fractions.Fraction(sample_rate, sr)
    return [scipy.signal.resample_poly(_trim(p, sr), ratio.numerator, ratio.denominator) for p in pieces]
