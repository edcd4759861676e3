"""Render one augmented waveform, with the semantics of Kaldi's ``wav-reverberate``.

This is what the ``wav.scp`` entries of an augmented data dir (made by ``subtools/kaldi/augment.py``)
run::

    python3 subtools/kaldi/augment_wav.py --utt U --input 'CLEAN-ENTRY' --bg music.wav 15 |

``read_audio`` (subtools/kaldi/audio.py) recognises that prefix and calls :func:`render` in-process with
the shlex-split arguments; run as a script it writes the same samples as a 16-bit wav to stdout, so the
pipe also works for any Kaldi tool. Every random choice (which RIR/noise, SNR, start time) was made
when the data dir was written, so rendering is a pure function of its arguments.

Semantics (checked against Kaldi ``src/featbin/wav-reverberate.cc`` with ``--shift-output=true``):

- Reverberation (``--rir``): the RIR (int16-scale samples) is scaled by 2^-15 and the clean signal
  ``x [N]`` is fully convolved with it; the output keeps N samples starting at the RIR's peak
  (``argmax h``, the direct path), so it stays time-aligned with the clean signal (and its VAD).
- Additive noise: the reference power is the clean power ``P = mean(x^2)`` over the whole utterance.
  A noise ``n`` at SNR ``s`` dB is scaled by ``sqrt(10^(-s/10) * P / mean(n^2))``.
  Foreground noise (``--fg``) is added once at its start time (seconds, floor to a sample), its power
  measured over the whole noise file, and cut at the end of the utterance. Background noise (``--bg``)
  is first repeated/trimmed to N samples (``wav-reverberate --duration``) and its power measured over
  that looped signal, so each background noise sits exactly at its SNR over the utterance.
- Power normalisation (default, Kaldi ``--normalize-output=true``): the result is scaled so that its
  power equals the clean power. ``--no-normalize`` keeps the raw mixture.
- The result is rounded and clipped to the int16 range, so :func:`render` and the 16-bit wav written
  by the CLI hold identical samples.

Reverberation and additive noise are not combined in one call (Kaldi's voxceleb recipe never does;
mixing them would need Kaldi's early-reverberation reference power).
"""
import argparse
import functools
import io
import sys

import numpy as np
import scipy.signal
import soundfile

from subtools.kaldi.audio import AudioError, lossless_info, read_audio

INT16_MIN, INT16_MAX = -32768, 32767


class _Parser(argparse.ArgumentParser):
    """Raise instead of exiting: :func:`render` runs inside the feature-extraction process."""

    def error(self, message):
        raise AudioError(f"augment_wav.py: bad arguments: {message}")


def build_parser():
    parser = _Parser(
        description="Render one augmented waveform (Kaldi wav-reverberate semantics); "
                    "writes a 16-bit wav to stdout.")
    parser.add_argument("--utt", default="<augmented>", help="utterance id, used in error messages")
    parser.add_argument("--input", required=True,
                        help="clean wav.scp entry: an audio file path or a 'cmd |' pipe")
    parser.add_argument("--rir", help="room impulse response (wav.scp entry) to convolve with")
    parser.add_argument("--fg", nargs=3, action="append", default=[], metavar=("ENTRY", "SNR", "START"),
                        help="foreground noise added once at START seconds at SNR dB (repeatable)")
    parser.add_argument("--bg", nargs=2, action="append", default=[], metavar=("ENTRY", "SNR"),
                        help="background noise looped over the whole utterance at SNR dB (repeatable)")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="do not rescale the result to the clean signal's power")
    return parser


@functools.lru_cache(maxsize=32)
def _read_whole(entry):
    """RIRs and foreground noises are short and shared by many utterances: keep recent ones."""
    wave, sr = read_audio(entry, entry)
    wave.setflags(write=False)
    return wave, sr


def _read_head(entry, num_samples):
    """First ``num_samples`` of a background noise (music/speech files run for minutes; a wav/flac file is
    read only that far, other audio is decoded whole)."""
    if entry.rstrip().endswith("|") or lossless_info(entry)[0] is None:
        wave, sr = read_audio(entry, entry)
        return wave[:num_samples], sr
    try:
        wave, sr = soundfile.read(entry, frames=num_samples, dtype="int16", always_2d=True)
    except (RuntimeError, OSError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(f"{entry}: cannot read: {err}") from err
    if wave.shape[1] != 1:
        raise AudioError(f"{entry}: has {wave.shape[1]} channels, expected mono")
    return wave[:, 0].astype(np.float32), sr


def _read_source(utt, what, entry, sample_rate, head=None):
    """Read a RIR/noise entry as float64 (``head``: only its first samples), checking that it is
    readable, not silent and at the clean sample rate; errors name the utterance and the input."""
    try:
        wave, sr = _read_whole(entry) if head is None else _read_head(entry, head)
    except ValueError as err:
        raise AudioError(f"{utt}: {what}: {err}") from err
    if sr != sample_rate:
        raise AudioError(f"{utt}: {what} '{entry}' has sample rate {sr}, the clean audio {sample_rate}")
    if wave.size == 0 or not np.any(wave):
        raise AudioError(f"{utt}: {what} '{entry}' is empty or all zeros")
    return wave.astype(np.float64)


def reverberate(x, rir):
    """Convolve ``x [N]`` with ``rir [L]`` (already scaled) and keep N samples from the RIR peak."""
    peak = int(np.argmax(rir))
    return scipy.signal.oaconvolve(x, rir)[peak:peak + x.size]


def _scaled(noise, snr_db, ref_power):
    return noise * np.sqrt(10.0 ** (-snr_db / 10.0) * ref_power / np.mean(noise ** 2))


def render(argv):
    """Render the augmented waveform described by ``argv`` (the script's arguments, shlex-split).

    Returns ``(wave, sample_rate)``: ``wave`` float32 ``[N]`` in int16 scale (integer-valued), N = the
    clean length. Raises ``AudioError`` (a ValueError) naming the
    utterance and the offending input.
    """
    args = build_parser().parse_args(argv)
    if args.rir and (args.fg or args.bg):
        raise AudioError(f"{args.utt}: --rir cannot be combined with --fg/--bg")
    clean, sample_rate = read_audio(args.input, args.utt)
    x = clean.astype(np.float64)
    num_samples = x.size
    clean_power = np.mean(x ** 2) if num_samples else 0.0

    y = x.copy()
    if args.rir:
        rir = _read_source(args.utt, "RIR", args.rir, sample_rate) / 2.0 ** 15
        y = reverberate(x, rir)
    for entry, snr, start in args.fg:
        noise = _scaled(_read_source(args.utt, "noise", entry, sample_rate), float(snr), clean_power)
        offset = int(float(start) * sample_rate)
        length = min(noise.size, num_samples - offset)
        if length > 0:
            y[offset:offset + length] += noise[:length]
    for entry, snr in args.bg if num_samples else []:
        noise = _read_source(args.utt, "noise", entry, sample_rate, head=num_samples)
        y += _scaled(np.resize(noise, num_samples), float(snr), clean_power)

    if args.normalize and num_samples:
        power = np.mean(y ** 2)
        if power > 0:
            y *= np.sqrt(clean_power / power)
    return np.clip(np.rint(y), INT16_MIN, INT16_MAX).astype(np.float32), sample_rate


def main(argv=None):
    wave, sample_rate = render(sys.argv[1:] if argv is None else argv)
    buffer = io.BytesIO()  # WAV needs a seekable file for its header; stdout may be a pipe
    soundfile.write(buffer, wave.astype(np.int16), sample_rate, format="WAV", subtype="PCM_16")
    sys.stdout.buffer.write(buffer.getvalue())
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        sys.exit(f"augment_wav.py: {err}")
