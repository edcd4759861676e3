"""Read one wav.scp entry (a file path or a ``cmd |`` pipe) as a Kaldi-scaled waveform.

Files: PCM and FLAC (whatever libsndfile reads losslessly) through soundfile; compressed audio (m4a/AAC,
mp3, ogg/vorbis/opus, ...) in-process through FFmpeg's decoders (:mod:`subtools.kaldi.decode`), with the
samples of an ``ffmpeg -i FILE -f wav -acodec pcm_s16le - |`` pipe, so ``wav.scp`` may name such files
directly.

Policies (SPEC §10), each raising :class:`AudioError` naming the utterance:
- missing, empty (0 bytes or 0 samples) or undecodable file (for compressed audio: any packet FFmpeg
  cannot decode); a pipe whose command exits non-zero (its stderr tail is quoted) or prints nothing;
- more than one channel: error, as Kaldi's compute-*-feats with the default ``--channel=-1``;
  pass ``channel=N`` (the feature confs' ``--channel=N``) to pick channel N instead;
- a sample rate other than ``expected_rate`` (when given): error; we never resample silently;
- a truncated wav file (its header declares more audio than the file holds): the samples present are
  used and an :class:`AudioWarning` names the utterance (the feature jobs list it in
  ``DATA/log/make_<type>.warnings``).

Pipes run with ``bash -o pipefail -c``, so a failing command anywhere in the pipe is an error.
In-process Python pipes: ``python3 [DIR/]subtools/PKG/NAME.py ARGS |`` is not spawned when the module
``subtools.PKG.NAME`` defines ``render(argv) -> (wave, rate)``; ``render(shlex.split(ARGS))`` is called
instead (same output as the command, without a Python start-up per utterance). The augmented copies'
entries (``subtools/kaldi/augment_wav.py``) are such pipes; this module imports no augmentation code.

:func:`durations` gives utt2dur (Kaldi get_utt2dur.sh): file headers are read (for compressed files only
where the container gives the decoded length exactly, :func:`subtools.kaldi.decode.num_samples`; else
they are decoded), pipes are run.
"""
import importlib
import io
import os
import re
import shlex
import struct
import subprocess
import warnings

import numpy as np
import soundfile

from subtools.kaldi import decode

INT16_SCALE = 32768.0
# libsndfile also reads these, but FFmpeg's decoders give the samples of the recipe's ffmpeg pipes
COMPRESSED_SNDFILE_FORMATS = {"MP3", "OGG"}
_PYTHON_PIPE = re.compile(
    r"^\s*python3?\s+(?:\S*/)?(?P<script>subtools(?:/\w+)+)\.py(?:\s+(?P<args>.*?))?\s*\|\s*$")


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


def _decode(source, who, what):
    """soundfile decode of a path or file object -> (float32 [N, C] in int16 scale, rate); AudioError
    "``who``: cannot decode audio from ``what``"."""
    try:
        wave, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{who}: cannot decode audio from {what}: {e}") from None
    return wave * INT16_SCALE, rate


def lossless_info(path):
    """``(info, error)``: libsndfile's header info of ``path`` when it reads the file losslessly (WAV,
    FLAC, ...; not the compressed formats FFmpeg decodes, :data:`COMPRESSED_SNDFILE_FORMATS`), else None;
    ``error``: why libsndfile could not open it (None when it could)."""
    try:
        info = soundfile.info(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        return None, e
    return (None if info.format in COMPRESSED_SNDFILE_FORMATS else info), None


def decode_file(path, who):
    """An audio file -> (float32 [N, C] in int16 scale, rate): libsndfile for PCM/FLAC, FFmpeg's decoders
    (:mod:`subtools.kaldi.decode`) for the rest. AudioError "``who``: ..." (e.g. "utterance U") when the
    file is missing, empty or neither can decode it."""
    where = "" if who == path else f": {path}"
    if not os.path.isfile(path):
        raise AudioError(f"{who}: audio file not found{where}")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{who}: audio file is empty (0 bytes){where}")
    info, sndfile_error = lossless_info(path)
    if info is not None:
        return _decode(path, who, path)
    try:
        return decode.decode(path)
    except decode.DecodeError as e:
        cause = f"libsndfile: {sndfile_error}; FFmpeg: {e}" if sndfile_error else f"FFmpeg: {e}"
        raise AudioError(f"{who}: cannot decode audio from {path}: {cause}") from None


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


def _in_process_renderer(entry):
    """``(render, argv)`` when ``entry`` is a Python pipe of this package whose module defines ``render``
    (module docstring), else None."""
    match = _PYTHON_PIPE.match(entry)
    if not match:
        return None
    try:
        module = importlib.import_module(match.group("script").replace("/", "."))
    except ImportError:
        return None
    render = getattr(module, "render", None)
    return (render, shlex.split(match.group("args") or "")) if callable(render) else None


def _render_in_process(render, argv, utt, entry):
    try:
        wave, rate = render(argv)
    except Exception as e:
        raise AudioError(f"utterance {utt}: command failed (run in-process): {entry}\n  "
                         f"{type(e).__name__}: {e}") from None
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
        renderer = _in_process_renderer(entry)
        if renderer:
            wave, rate = _render_in_process(*renderer, utt, entry)
        else:
            wave, rate = _decode(io.BytesIO(_run_pipe(entry[:-1], utt)), f"utterance {utt}", f"command: {entry}")
    else:
        wave, rate = decode_file(entry, f"utterance {utt}")
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
    """Seconds of wav.scp value ``entry``: a file's header (a compressed file's container where it gives
    the decoded length exactly, else a decode), a full decode of a pipe. Raises AudioError naming the
    utterance."""
    entry = entry.strip()
    if not entry.endswith("|") and os.path.isfile(entry):
        info, _ = lossless_info(entry)
        if info is not None:
            return info.frames / info.samplerate
        exact = decode.num_samples(entry)
        if exact:
            return exact[0] / exact[1]
    wave, rate = read_audio(entry, utt)
    return len(wave) / rate


def durations(wav_scp, nj=1, failed=None):
    """{utt: seconds} for a wav.scp table {utt: entry}, with ``nj`` threads (pipes run in parallel).
    ``failed``: a dict that collects ``{utt: message}`` of the entries that cannot be read (left out of the
    result) instead of raising AudioError."""

    def one(utt):
        try:
            return duration(wav_scp[utt], utt)
        except AudioError as e:
            if failed is None:
                raise
            failed[utt] = " ".join(str(e).split())
            return None

    if nj > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(nj) as pool:
            seconds = dict(zip(wav_scp, pool.map(one, wav_scp)))
    else:
        seconds = {utt: one(utt) for utt in wav_scp}
    return {utt: d for utt, d in seconds.items() if d is not None}
