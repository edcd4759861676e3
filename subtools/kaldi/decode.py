"""Compressed audio files (m4a/AAC, mp3, ogg/vorbis/opus, ...) decoded in-process by FFmpeg's decoders.

PyAV (``av``) ships FFmpeg's libraries in its wheel, so no ffmpeg process is started per file. The
samples are those of the wav.scp pipe the VoxCeleb2 recipe used, ``ffmpeg -i FILE -f wav -acodec
pcm_s16le - |``:

- the first audio stream is decoded by FFmpeg's decoder, priming samples skipped as FFmpeg does (an
  MP4 edit list; Vorbis/Opus pre-skip; the MP3 gapless header);
- float output (AAC, MP3, Vorbis, Opus all decode to float) becomes 16-bit as swresample does it:
  ``clip(round_half_even(x * 32768), -32768, 32767)``; any other sample format goes through swresample
  itself (``av.AudioResampler(format="s16")``, the conversion the ffmpeg command inserts);
- all channels are kept (``[N, C]``); the caller picks one or refuses several.

The pipe's own FFmpeg may be another release than the wheel's: their float decoders then differ by at
most one float32 rounding step, i.e. at most 1 in 16 bits on the rare samples that sit at a rounding
boundary (tests/test_audio_decode.py). Unlike the pipe, which skips a corrupt packet and exits 0, a
packet FFmpeg cannot decode is an error here (:class:`DecodeError`): bad audio is never used silently.

:func:`num_samples` gives the decoded length from the container when it is exact without decoding
(AAC-LC in MP4: every packet decodes to 1024 samples; FFmpeg drops the edit list's priming, given
by the first packet's negative time stamp, but keeps the padding at the end, so the header's duration
is *not* the decoded length), else None.
"""
from fractions import Fraction

import av
import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
_FLOAT_FORMATS = {"flt", "fltp", "dbl", "dblp"}
AAC_FRAME = 1024


class DecodeError(ValueError):
    """FFmpeg could not open or decode the file; the message is FFmpeg's."""


def _first_audio_stream(container, path):
    if not container.streams.audio:
        raise DecodeError(f"no audio stream in {path}")
    stream = container.streams.audio[0]
    stream.codec_context.thread_count = 1  # one core per feature job: jobs are the parallelism
    return stream


def _frame_samples(frame):
    """One decoded frame -> int16-valued float32 ``[n, C]`` (module docstring's conversion)."""
    if frame.format.name in _FLOAT_FORMATS:
        x = frame.to_ndarray()
        x = x.T if frame.format.is_planar else x.reshape(-1, frame.layout.nb_channels)
        return np.clip(np.rint(x * 32768.0), INT16_MIN, INT16_MAX).astype(np.float32)
    resampler = av.AudioResampler(format="s16")  # packed s16: to_ndarray() is [1, n * C]
    parts = [f.to_ndarray().reshape(-1, f.layout.nb_channels) for f in resampler.resample(frame)]
    return np.concatenate(parts).astype(np.float32)


def decode(path):
    """``(wave, rate)`` of an audio file: ``wave`` float32 ``[N, C]`` in int16 scale (integer-valued), as
    the ffmpeg pipe gives it; ``rate`` in Hz. Raises :class:`DecodeError` with FFmpeg's message."""
    try:
        with av.open(path) as container:
            stream = _first_audio_stream(container, path)
            parts, rate = [], stream.codec_context.sample_rate
            for frame in container.decode(stream):
                parts.append(_frame_samples(frame))
                rate = frame.sample_rate  # the decoder's (HE-AAC doubles the header's)
            channels = stream.codec_context.layout.nb_channels
    except av.error.FFmpegError as err:
        raise DecodeError(str(err)) from None
    wave = np.concatenate(parts) if parts else np.zeros((0, channels), dtype=np.float32)
    return wave, int(rate)


def num_samples(path):
    """``(samples, rate)`` that :func:`decode` returns for ``path``, read from the container without
    decoding, when that is exact (AAC-LC in MP4, see module docstring); None otherwise or when the
    container cannot be read (a decode then tells why)."""
    try:
        with av.open(path) as container:
            if not container.streams.audio or "mp4" not in container.format.name.split(","):
                return None
            stream = container.streams.audio[0]
            codec = stream.codec_context
            if (codec.name != "aac" or codec.profile != "LC" or codec.frame_size != AAC_FRAME or stream.frames <= 0
                    or stream.time_base != Fraction(1, codec.sample_rate)):
                return None
            first = next(container.demux(stream), None)
            if first is None or first.pts is None:
                return None
            return stream.frames * AAC_FRAME + min(first.pts, 0), int(codec.sample_rate)
    except av.error.FFmpegError:
        return None
