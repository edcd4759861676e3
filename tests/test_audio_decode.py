"""In-process decoding of compressed audio (subtools/kaldi/decode.py through read_audio): the samples of the
recipe's ``ffmpeg … -f wav -acodec pcm_s16le - |`` pipe (reference: the installed ffmpeg command), utt2dur
from the container equal to the decoded length, bad files, the channel policy, and audio reading free of
augmentation imports. Files are encoded here with ffmpeg from espeak-ng speech plus noise."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from subtools.kaldi import decode
from subtools.kaldi.audio import AudioError, duration, durations, read_audio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16000
PIPE = "ffmpeg -v 8 -i {} -f wav -acodec pcm_s16le - |"
ENCODERS = {"m4a": ["-c:a", "aac"], "mp3": ["-c:a", "libmp3lame"], "ogg": ["-c:a", "libvorbis"],
            "opus": ["-c:a", "libopus"]}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """3 s of espeak-ng speech plus noise at 16 kHz, as a 16-bit wav."""
    root = tmp_path_factory.mktemp("decode")
    speech = root / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Speaker verification at scale, one pass over the audio."],
                   check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(speech), "-ar", str(RATE), str(root / "s16.wav")],
                   check=True)
    x, _ = soundfile.read(root / "s16.wav", dtype="float64")
    x = np.resize(x, 3 * RATE) * 20000 + np.random.default_rng(0).normal(0, 300, 3 * RATE)
    path = root / "source.wav"
    soundfile.write(path, np.clip(x, -32768, 32767).astype(np.int16), RATE, subtype="PCM_16")
    return path


def encode(source, dst, seconds=None, options=()):
    args = ["-t", str(seconds)] if seconds else []
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *args, *options, str(dst)], check=True)
    return str(dst)


def assert_like_pipe(path, utt="u", **kwargs):
    """read_audio(path) against read_audio of the ffmpeg pipe: same length and rate, <= 1 LSB apart on at
    most 0.1 % of the samples (the pipe's FFmpeg may be another release than PyAV's; both round the same
    float32 decoder output, which may differ in its last bit). Returns the in-process samples."""
    wave, rate = read_audio(path, utt, **kwargs)
    ref, ref_rate = read_audio(PIPE.format(path), utt, **kwargs)
    assert (rate, wave.shape) == (ref_rate, ref.shape)
    diff = np.abs(wave - ref)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * wave.size, (diff.max(), np.count_nonzero(diff))
    assert np.array_equal(wave, np.rint(wave)) and np.abs(wave).max() > 5000  # 16-bit values, real audio
    return wave


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.7])
def test_m4a_matches_ffmpeg_pipe_and_duration_is_the_decoded_length(source, tmp_path, seconds):
    for name, options in (("edit-list", []), ("no-edit-list", ["-use_editlist", "0"])):
        path = encode(source, tmp_path / f"{name}.m4a", seconds, ENCODERS["m4a"] + options)
        wave = assert_like_pipe(path)
        # AAC priming/padding: the decoded length is neither the source's nor the header's duration
        assert wave.size != round(seconds * RATE)
        assert decode.num_samples(path) == (wave.size, RATE)
        assert duration(path, "u") == wave.size / RATE


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "opus"])
def test_other_compressed_formats_match_ffmpeg_pipe(source, tmp_path, fmt):
    path = encode(source, tmp_path / f"a.{fmt}", 1.3, ENCODERS[fmt])
    wave = assert_like_pipe(path)
    assert decode.num_samples(path) is None  # no exact length in the header: utt2dur decodes
    assert duration(path, "u") * read_audio(path, "u")[1] == wave.size


def test_stereo_follows_the_wav_channel_policy(source, tmp_path):
    path = encode(source, tmp_path / "st.m4a", 1.0, ENCODERS["m4a"] + ["-af", "pan=stereo|c0=c0|c1=0.5*c0"])
    for entry in (path, PIPE.format(path)):
        with pytest.raises(AudioError, match="utterance S: audio has 2 channels"):
            read_audio(entry, "S")
    left, right = assert_like_pipe(path, channel=0), assert_like_pipe(path, channel=1)
    assert np.abs(right - 0.5 * left).max() > 1 and np.corrcoef(left, right)[0, 1] > 0.99  # two channels kept


def test_bad_compressed_files_are_errors_naming_the_utterance(source, tmp_path):
    good = open(encode(source, tmp_path / "good.m4a", 2.0, ENCODERS["m4a"]), "rb").read()
    cut = tmp_path / "cut.m4a"            # moov atom at the end: cut off
    cut.write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)             # a run of garbage inside the audio data (the pipe skips it silently)
    corrupt[len(good) // 2: len(good) // 2 + 2000] = b"\x17" * 2000
    (tmp_path / "corrupt.m4a").write_bytes(bytes(corrupt))
    (tmp_path / "text.m4a").write_text("not an m4a file\n")
    for name in ("cut", "corrupt", "text"):
        with pytest.raises(AudioError, match=f"utterance U-{name}: cannot decode audio from .*{name}.m4a.*FFmpeg"):
            read_audio(str(tmp_path / f"{name}.m4a"), f"U-{name}")
    failed = {}
    table = {"a": str(tmp_path / "good.m4a"), "b": str(tmp_path / "cut.m4a"), "c": str(tmp_path / "text.m4a")}
    assert set(durations(table, nj=2, failed=failed)) == {"a"}
    assert sorted(failed) == ["b", "c"] and "utterance c: cannot decode audio" in failed["c"]
    with pytest.raises(AudioError, match="utterance b: cannot decode audio"):
        durations(table)


def test_audio_reading_imports_no_augmentation_code():
    """No import circle: audio.py/decode.py never import augmentation; augment_wav imports audio."""
    check = ("import sys, subtools.kaldi.audio, subtools.kaldi.decode; "
             "assert not [m for m in sys.modules if 'augment' in m], sorted(sys.modules)")
    for code in (check, "import subtools.kaldi.augment_wav"):
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
