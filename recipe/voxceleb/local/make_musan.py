"""MUSAN data dirs for augmentation (Kaldi steps/data/make_musan.py conventions).

Input ``--musan DIR`` with ``music/ noise/ speech/`` (sub-corpora such as ``music/fma/`` each with
``*.wav`` and an ``ANNOTATIONS`` file). Output ``OUT/musan_{music,noise,speech}/``: utterance = file
name without ``.wav`` (e.g. ``music-fma-0000``), speaker = utterance, wav.scp, utt2dur.

Music: only files listed in a music ``ANNOTATIONS`` file (``utt genres vocals(Y|N) artist ...``) are
used, as in Kaldi; ``--no-vocals`` leaves out music with vocals (Kaldi ``--use-vocals false``; the
voxceleb recipe keeps them). Annotated files without audio and music audio without annotation are
reported. Noise and speech: every wav file.
"""
import argparse
import os

from recipe.voxceleb.local.common import PrepError, find_audio, require_dir, warn, write_dir
from subtools.cli import run_cli

PARTS = ("music", "noise", "speech")


def scan(part_dir):
    """{utt: absolute path} of the wav files under ``part_dir``."""
    wav_scp = {}
    for rel in find_audio(part_dir, ".wav"):
        utt = os.path.splitext(os.path.basename(rel))[0]
        if utt in wav_scp:
            raise PrepError(f"MUSAN: {utt}.wav found twice under {part_dir}")
        wav_scp[utt] = os.path.abspath(os.path.join(part_dir, rel))
    return wav_scp


def read_music_annotations(music_dir):
    """{utt: has_vocals} from every ANNOTATIONS file under ``music_dir``."""
    vocals, found = {}, False
    for directory, _, files in os.walk(music_dir):
        if "ANNOTATIONS" not in files:
            continue
        found = True
        path = os.path.join(directory, "ANNOTATIONS")
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < 3 or fields[2] not in ("Y", "N"):
                    raise PrepError(f"{path}:{lineno}: expected 'utt genres Y|N artist'")
                vocals[fields[0]] = fields[2] == "Y"
    if not found:
        raise PrepError(f"MUSAN: no ANNOTATIONS file under {music_dir}")
    return vocals


def music_subset(wav_scp, vocals, use_vocals):
    """The annotated music files (without vocals unless ``use_vocals``); reports mismatches."""
    absent = sorted(set(vocals) - set(wav_scp))
    unannotated = sorted(set(wav_scp) - set(vocals))
    if absent:
        warn(f"MUSAN music: {len(absent)} annotated files have no audio: {' '.join(absent[:5])}")
    if unannotated:
        warn(f"MUSAN music: {len(unannotated)} files without annotation left out: {' '.join(unannotated[:5])}")
    return {u: p for u, p in wav_scp.items() if u in vocals and (use_vocals or not vocals[u])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--musan", required=True, help="MUSAN root holding music/ noise/ speech/")
    parser.add_argument("--no-vocals", action="store_true", help="leave out music with vocals")
    parser.add_argument("--nj", type=int, default=1, help="processes for reading audio headers")
    parser.add_argument("out", help="output data root")
    args = parser.parse_args()
    require_dir(args.musan, "--musan")
    for part in PARTS:
        part_dir = require_dir(os.path.join(args.musan, part), f"MUSAN {part}")
        wav_scp = scan(part_dir)
        if part == "music":
            wav_scp = music_subset(wav_scp, read_music_annotations(part_dir), not args.no_vocals)
        if not wav_scp:
            raise PrepError(f"MUSAN {part}: no usable wav files under {part_dir}")
        data = write_dir(os.path.join(args.out, f"musan_{part}"), wav_scp, {u: u for u in wav_scp}, args.nj)
        print(f"make_musan: musan_{part}: {len(wav_scp)} files, {sum(data.utt2dur.values()) / 3600:.2f} h")


if __name__ == "__main__":
    run_cli(main)
