"""Read one wav.scp entry (a file path or a ``cmd |`` pipe) as a Kaldi-scaled waveform.

Policies (SPEC §10), each raising :class:`AudioError` naming the utterance:
- missing, empty (0 bytes or 0 samples) or undecodable file; a pipe whose command exits non-zero
  (its stderr tail is quoted) or prints nothing;
- more than one channel: error, as Kaldi's compute-*-feats with the default ``--channel=-1``;
  pass ``channel=N`` (the feature confs' ``--channel=N``) to pick channel N instead;
- a sample rate other than ``expected_rate`` (when given): error; we never resample silently;
- a truncated wav file (its header declares more audio than the file holds): the samples present are
  used and an :class:`AudioWarning` names the utterance (the feature jobs list it in
  ``DATA/log/make_<type>.warnings``).

Pipes run with ``bash -o pipefail -c``, so a failing command anywhere in the pipe is an error.
In-process fast path: a pipe ``python3 [DIR/]subtools/kaldi/augment_wav.py ARGS |`` is not spawned;
``subtools.kaldi.augment_wav.render(shlex.split(ARGS))`` is called instead (same output as the
command, without a Python start-up per utterance).

:func:`durations` gives utt2dur (Kaldi get_utt2dur.sh): file headers are read, pipes are run.
"""
import io
import os
import re
import shlex
import struct
import subprocess
import warnings

import numpy as np
import soundfile

INT16_SCALE = 32768.0
_AUGMENT_PIPE = re.compile(r"^\s*python3?\s+(?:\S*/)?subtools/kaldi/augment_wav\.py\s+(?P<args>.*?)\s*\|\s*$")


class AudioError(ValueError):
    """Bad audio for one utterance; the message names the utterance and the cause."""


class AudioWarning(UserWarning):
    """Audio read, but not as its file says (e.g. truncated); the message names the utterance."""


def wav_truncation(path):
    """``(declared, present)`` byte counts of the data chunk of a RIFF/WAVE file cut short, else None
    (also None for other formats and for the 0 / 0xFFFFFFFF sizes of streamed wavs)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size, pos = os.fstat(f.fileno()).st_size, 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                present = size - pos - 8
                return (length, present) if present < length < 0xFFFFFFFF else None
            pos += 8 + length + (length & 1)
    return None


def _decode(source, utt, what):
    """soundfile decode of a path or file object -> (float32 [N, C] in [-1, 1), rate)."""
    try:
        wave, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"utterance {utt}: cannot decode audio from {what}: {e}") from None
    return wave, rate


def _run_pipe(command, utt):
    """Run a wav.scp pipe command; return its stdout bytes."""
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-1000:]
        raise AudioError(f"utterance {utt}: command failed (exit {proc.returncode}): {command}\n  stderr: {err}")
    if not proc.stdout:
        raise AudioError(f"utterance {utt}: command printed no audio: {command}")
    return proc.stdout


def _render_in_process(args, utt, entry):
    from subtools.kaldi import augment_wav  # lazy: only recipes with augmentation need it

    try:
        wave, rate = augment_wav.render(shlex.split(args))
    except Exception as e:
        raise AudioError(f"utterance {utt}: augmentation failed: {entry}\n  {type(e).__name__}: {e}") from None
    wave = np.asarray(wave, dtype=np.float32)
    return (wave[:, None] if wave.ndim == 1 else wave), int(rate)


def read_audio(entry, utt, expected_rate=None, channel=None):
    """Read wav.scp value ``entry`` of utterance ``utt``.

    Returns ``(wave, rate)``: ``wave`` float32 ``[N]`` in int16 scale (Kaldi's convention: a full-scale
    16-bit sample is +-32768), ``rate`` in Hz. ``channel`` picks one channel of a multi-channel file
    (None: multi-channel is an error). Raises AudioError (see the module policies).
    """
    entry = entry.strip()
    if entry.endswith("|"):
        match = _AUGMENT_PIPE.match(entry)
        if match:
            wave, rate = _render_in_process(match.group("args"), utt, entry)
        else:
            wave, rate = _decode(io.BytesIO(_run_pipe(entry[:-1], utt)), utt, f"command: {entry}")
            wave = wave * INT16_SCALE
    else:
        if not os.path.isfile(entry):
            raise AudioError(f"utterance {utt}: audio file not found: {entry}")
        if os.path.getsize(entry) == 0:
            raise AudioError(f"utterance {utt}: audio file is empty (0 bytes): {entry}")
        wave, rate = _decode(entry, utt, entry)
        wave = wave * INT16_SCALE
        truncated = wav_truncation(entry)
        if truncated:
            warnings.warn(AudioWarning(f"utterance {utt}: truncated wav: header declares {truncated[0]} bytes of "
                                       f"audio, the file holds {truncated[1]}; using the {wave.shape[0]} samples "
                                       f"present: {entry}"))
    if wave.shape[0] == 0:
        raise AudioError(f"utterance {utt}: audio has no samples: {entry}")
    if channel is not None:
        if not 0 <= channel < wave.shape[1]:
            raise AudioError(f"utterance {utt}: channel {channel} requested but audio has {wave.shape[1]}: {entry}")
        wave = wave[:, channel]
    elif wave.shape[1] != 1:
        raise AudioError(
            f"utterance {utt}: audio has {wave.shape[1]} channels; give --channel=N in the feature conf "
            f"or make it mono in wav.scp (e.g. 'sox FILE -t wav - remix 1 |'): {entry}"
        )
    else:
        wave = wave[:, 0]
    if expected_rate is not None and rate != expected_rate:
        raise AudioError(f"utterance {utt}: sample rate {rate} Hz, expected {expected_rate} Hz: {entry}")
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)


def duration(entry, utt):
    """Seconds of wav.scp value ``entry``: the header of a file, a full decode of a pipe.
    Raises AudioError naming the utterance."""
    if entry.rstrip().endswith("|"):
        wave, rate = read_audio(entry, utt)
        return len(wave) / rate
    try:
        info = soundfile.info(entry)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"utterance {utt}: cannot read header of {entry}: {e}") from None
    return info.frames / info.samplerate


def durations(wav_scp, nj=1):
    """{utt: seconds} for a wav.scp table {utt: entry}, with ``nj`` threads (pipes run in parallel)."""
    if nj > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(nj) as pool:
            return dict(zip(wav_scp, pool.map(duration, wav_scp.values(), wav_scp)))
    return {utt: duration(entry, utt) for utt, entry in wav_scp.items()}
