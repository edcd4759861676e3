"""Any audio a user has -> the waveform a model package expects (mono, its sample rate, int16 scale).

* a file: libsndfile for what it reads losslessly (wav, flac, ...), FFmpeg's decoders in process
  (:mod:`subtools.kaldi.decode`, PyAV) for compressed audio (mp3, ogg, opus, m4a, aac, ...) and anything
  else FFmpeg reads, as the recipe's own reader (:mod:`subtools.kaldi.audio`) decides, so a file gives
  the samples it gives in a wav.scp;
* a wav.scp pipe entry (``cmd |``) is read exactly as the recipe reads it
  (:func:`subtools.kaldi.audio.read_audio`: mono, Kaldi's rules);
* an array: ``[N]`` or ``[N, C]`` samples, float in [-1, 1] or integer PCM (int16 full scale 32768).

Several channels are averaged (or the channel the feature conf's ``--channel`` names is taken) and any
sample rate is resampled (scipy ``resample_poly``) to the model's, each with a one-line notice on the
``subtools.inference`` logger. A missing, empty or undecodable input is an :class:`AudioError` naming it.
"""
import logging
import math
import os

import numpy as np

from subtools.kaldi import audio
from subtools.kaldi.audio import INT16_SCALE, AudioError, read_audio

logger = logging.getLogger("subtools.inference")


def decode_file(path, who):
    """``(float32 [N, C] in [-1, 1), rate)`` of an audio file, decoded as the recipe decodes it
    (:func:`subtools.kaldi.audio.decode_file`); AudioError "``who``: ..." when it is missing, empty or
    undecodable."""
    wave, rate = audio.decode_file(path, who)
    if wave.shape[0] == 0:
        raise AudioError(f"{who}: audio has no samples: {path}")
    return wave / INT16_SCALE, int(rate)


def as_samples(array, name):
    """A user's array -> float32 ``[N, C]`` in [-1, 1) (integer PCM divided by its full scale)."""
    array = np.asarray(array)
    if array.ndim not in (1, 2) or array.size == 0:
        raise AudioError(f"{name}: expected audio samples [N] or [N, channels], got shape {list(array.shape)}")
    if np.issubdtype(array.dtype, np.integer):
        array = array / float(np.iinfo(array.dtype).max + 1)
    wave = np.asarray(array, dtype=np.float32).reshape(array.shape[0], -1)
    if not np.isfinite(wave).all():
        raise AudioError(f"{name}: audio samples contain NaN/inf")
    return wave


def to_model_rate(wave, rate, target_rate, channel, name):
    """float32 ``[N, C]`` in [-1, 1) at ``rate`` -> float32 ``[N']`` in int16 scale at ``target_rate``:
    channel ``channel`` (None: the mean of the channels), resampled when the rates differ."""
    notes = []
    if channel is not None:
        if not 0 <= channel < wave.shape[1]:
            raise AudioError(f"{name}: the model reads channel {channel} (feature conf --channel) but the audio has "
                             f"{wave.shape[1]}")
        mono = wave[:, channel]
        if wave.shape[1] > 1:
            notes.append(f"channel {channel} of {wave.shape[1]} taken")
    else:
        mono = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
        if wave.shape[1] > 1:
            notes.append(f"{wave.shape[1]} channels averaged")
    if rate != target_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(rate), int(target_rate))
        mono = resample_poly(mono.astype(np.float64), target_rate // g, rate // g)
        notes.append(f"resampled {rate} -> {target_rate} Hz")
    if notes:
        logger.info("%s: %s", name, "; ".join(notes))
    return np.ascontiguousarray(mono * INT16_SCALE, dtype=np.float32)


def load_waveform(source, target_rate, channel=None, sample_rate=None, name=None):
    """A path, a wav.scp pipe entry (``cmd |``) or an array (at ``sample_rate``, default ``target_rate``)
    -> float32 ``[N]`` in int16 scale at ``target_rate`` (see module docstring). ``name`` labels messages."""
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if sample_rate is not None:
            raise ValueError(f"{source}: sample_rate is given by the file; pass it only with an array")
        if source.rstrip().endswith("|"):
            wave, rate = read_audio(source, name or source, channel=channel)  # mono, int16 scale, as the recipe
            return to_model_rate(wave[:, None] / INT16_SCALE, rate, target_rate, None, name or source)
        wave, rate = decode_file(source, name or source)
        return to_model_rate(wave, rate, target_rate, channel, name or source)
    name = name or "audio array"
    return to_model_rate(as_samples(source, name), int(sample_rate or target_rate), target_rate, channel, name)
