"""VoxCeleb2 dev data dir.

Input: ``dev/aac/idXXXXX/<youtube-id>/NNNNN.m4a`` under ``--vox2`` (or ``aac/`` directly under it).
Output ``OUT/voxceleb2_dev/``: utterance ``idXXXXX-<youtube-id>-NNNNN``, speaker ``idXXXXX``; wav.scp
entries are the m4a paths, decoded in-process by FFmpeg's decoders when read
(:mod:`subtools.kaldi.decode`: the samples of Kaldi's pipe, without an ffmpeg process per file), and
utt2dur is the decoded length read from each m4a's container (no decode). ``--pipes`` writes Kaldi's
VoxCeleb2 pipes instead, ``ffmpeg -v 8 -i FILE -f wav -acodec pcm_s16le - |`` (for Kaldi tools; no
utt2dur: it would take a full decode); ``--convert wav|flac --audio-dir DIR`` points to files converted
once in parallel by ``subtools/kaldi/convert_audio.py``.

``--check-audio`` decodes every m4a once (``--nj`` processes) and leaves out the files it cannot decode,
listing each with FFmpeg's error in ``voxceleb2_dev/bad_audio``. Without it an unreadable m4a is
reported (FFmpeg's error quoted) when features are computed.
"""
import argparse
import os
import shlex
import shutil

from recipe.voxceleb.local.common import PrepError, find_audio, require_dir, warn
from subtools.cli import run_cli
from subtools.kaldi import audio, convert_audio
from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import write_lines
from subtools.kaldi.trials import vox1_utt_id

AAC_ROOTS = ("dev/aac", "aac")


def ffmpeg_entry(path):
    """wav.scp pipe decoding one m4a to 16-bit wav on stdout."""
    return f"ffmpeg -v 8 -i {shlex.quote(path)} -f wav -acodec pcm_s16le - |"


def scan(vox2, pipes=False):
    """{utt: wav.scp entry} of the m4a files under ``vox2``: the path, or (``pipes``) an ffmpeg pipe."""
    roots = [os.path.join(vox2, r) for r in AAC_ROOTS if os.path.isdir(os.path.join(vox2, r))]
    if not roots:
        raise PrepError(f"VoxCeleb2: none of {', '.join(AAC_ROOTS)} found under {vox2}")
    root = roots[0]
    files = find_audio(root, ".m4a")
    if not files:
        raise PrepError(f"VoxCeleb2: no .m4a files under {root}")
    entry = ffmpeg_entry if pipes else str
    return {vox1_utt_id(rel): entry(os.path.abspath(os.path.join(root, rel))) for rel in files}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vox2", required=True, help="VoxCeleb2 root (holding dev/aac/)")
    parser.add_argument("--convert", choices=("wav", "flac"), help="convert the m4a files once to this format")
    parser.add_argument("--audio-dir", help="where converted files go (required with --convert)")
    parser.add_argument("--pipes", action="store_true",
                        help="wav.scp as Kaldi's 'ffmpeg ... |' pipes instead of the m4a paths")
    parser.add_argument("--check-audio", action="store_true", help="decode every m4a once, drop unreadable ones")
    parser.add_argument("--nj", type=int, default=1, help="parallel processes (check/convert/durations)")
    parser.add_argument("out", help="output data root")
    args = parser.parse_args()
    require_dir(args.vox2, "--vox2")
    if args.convert and not args.audio_dir:
        raise PrepError("--convert needs --audio-dir")
    if args.pipes and shutil.which("ffmpeg") is None:
        message = "ffmpeg not found on PATH: --pipes decode the VoxCeleb2 m4a files with it (apt-get install ffmpeg)"
        if args.convert or args.check_audio:
            raise PrepError(message)
        warn(message + "; wav.scp written anyway, features will fail until it is installed")

    wav_scp = scan(args.vox2, args.pipes)
    utt2spk = {u: u.split("-")[0] for u in wav_scp}
    out = os.path.join(args.out, "voxceleb2_dev")
    bad = {}
    if args.convert:
        wav_scp, bad = convert_audio.convert(wav_scp, utt2spk, args.audio_dir, args.convert, args.nj)
    elif args.check_audio:
        bad = convert_audio.check(wav_scp, args.nj)
    utt2dur = None
    if args.convert or not args.pipes:  # headers: an m4a whose container cannot be read is left out too
        utt2dur = audio.durations({u: e for u, e in wav_scp.items() if u not in bad}, args.nj, failed=bad)
    write_lines(os.path.join(out, "bad_audio"), [f"{u} {bad[u]}" for u in sorted(bad)])
    if bad:
        warn(f"{len(bad)} unreadable m4a files left out, listed with the decoder's errors in {out}/bad_audio")
    keep = {u: e for u, e in wav_scp.items() if u not in bad}
    DataDir(wav_scp=keep, utt2spk={u: utt2spk[u] for u in keep}, utt2dur=utt2dur).save(out)
    print(f"make_voxceleb2: {len(set(utt2spk[u] for u in keep))} speakers, {len(keep)} utterances"
          + (f" ({len(bad)} unreadable left out)" if bad else ""))


if __name__ == "__main__":
    run_cli(main)
