"""Decode the wav.scp entries of a data dir once: check them, or convert them to wav/flac files.

VoxCeleb2 ships m4a, decoded (in-process, :mod:`subtools.kaldi.decode`, or by an ``ffmpeg ... |`` pipe)
each time the audio is read. Converting once (in parallel) costs disk (about 2x the m4a size as flac)
and saves little since decoding is in-process (about 2.5 ms of CPU per 8 s utterance per pass, see
``bench/audio_pipes.py``); checking finds the files that cannot be decoded before a long feature run does.

Policy: an entry that cannot be decoded is left out and reported with the cause (FFmpeg's error; for
pipes, the command's stderr), never half-converted. Converted files are written to
``AUDIO_DIR/<spk>/<utt>.<fmt>`` atomically; an existing file is kept, so a rerun only does what is
missing.

CLI: ``python3 subtools/kaldi/convert_audio.py [--nj N] [--format flac] DATA AUDIO_DIR`` rewrites
``DATA/wav.scp`` to the converted files (utterances that failed are dropped from the dir, listed in
``DATA/bad_audio``); ``--check-only`` only lists the undecodable entries.
"""
import argparse
import multiprocessing
import os
import sys

import numpy as np
import soundfile

from subtools.kaldi.audio import read_audio
from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import atomic_write, write_lines

SUBTYPE = {"wav": "PCM_16", "flac": "PCM_16"}


def _map(function, items, nj):
    if nj > 1 and len(items) > 1:
        with multiprocessing.Pool(nj) as pool:
            return list(pool.imap_unordered(function, items, chunksize=16))
    return list(map(function, items))


def _check_one(item):
    utt, entry = item
    try:
        read_audio(entry, utt)
    except ValueError as err:
        return utt, str(err).replace("\n", " ")
    return utt, None


def check(wav_scp, nj=1):
    """{utt: error message} of the entries that cannot be decoded."""
    results = _map(_check_one, sorted(wav_scp.items()), nj)
    return {utt: err for utt, err in results if err is not None}


def _convert_one(item):
    utt, entry, dest, fmt = item
    if os.path.isfile(dest) and os.path.getsize(dest) > 0:
        return utt, dest, None
    try:
        wave, rate = read_audio(entry, utt)
    except ValueError as err:
        return utt, None, str(err).replace("\n", " ")
    with atomic_write(dest, "wb") as f:
        soundfile.write(f, wave.astype(np.int16), rate, format=fmt.upper(), subtype=SUBTYPE[fmt])
    return utt, dest, None


def convert(wav_scp, utt2spk, audio_dir, fmt="flac", nj=1):
    """Convert every entry to ``audio_dir/<spk>/<utt>.<fmt>``.

    Returns ``(new_wav_scp, bad)``: {utt: absolute path} of the converted utterances and
    {utt: error message} of those that failed.
    """
    audio_dir = os.path.abspath(audio_dir)
    items = [(u, e, os.path.join(audio_dir, utt2spk[u], f"{u}.{fmt}"), fmt) for u, e in sorted(wav_scp.items())]
    for spk in sorted(set(utt2spk[u] for u in wav_scp)):
        os.makedirs(os.path.join(audio_dir, spk), exist_ok=True)
    new_scp, bad = {}, {}
    for utt, dest, err in _map(_convert_one, items, nj):
        if err is None:
            new_scp[utt] = dest
        else:
            bad[utt] = err
    return new_scp, bad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--format", choices=sorted(SUBTYPE), default="flac")
    parser.add_argument("--check-only", action="store_true", help="only list the undecodable entries")
    parser.add_argument("data", help="data dir whose wav.scp is converted (rewritten in place)")
    parser.add_argument("audio_dir", nargs="?", help="where the converted files go")
    args = parser.parse_args(argv)
    data = DataDir.load(args.data)
    if data.wav_scp is None:
        raise FileNotFoundError(f"{args.data}/wav.scp: missing")
    if args.check_only:
        bad = check(data.wav_scp, args.nj)
    else:
        if not args.audio_dir:
            parser.error("AUDIO_DIR is required unless --check-only")
        new_scp, bad = convert(data.wav_scp, data.utt2spk, args.audio_dir, args.format, args.nj)
        data = data.select(new_scp)
        data.wav_scp = new_scp
        data.save(args.data)
    write_lines(os.path.join(args.data, "bad_audio"), [f"{u} {bad[u]}" for u in sorted(bad)])
    for utt in sorted(bad)[:10]:
        print(f"bad audio: {bad[utt]}", file=sys.stderr)
    print(f"convert_audio: {len(data.wav_scp) - (len(bad) if args.check_only else 0)} good, {len(bad)} bad "
          f"(listed in {args.data}/bad_audio)")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"convert_audio.py: {err}")
