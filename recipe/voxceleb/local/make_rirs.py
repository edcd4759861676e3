"""RIRS_NOISES lists for reverberation (the RIRs Kaldi's voxceleb/v2 recipe uses).

Input ``--rirs DIR`` = the ``RIRS_NOISES`` directory. Each ``simulated_rirs/{smallroom,mediumroom}/rir_list``
has lines ``--rir-id ID --room-id ROOM RIRS_NOISES/simulated_rirs/.../ID.wav`` (the leading
``RIRS_NOISES/`` stands for ``--rirs``). Output ``OUT/rirs_{smallroom,mediumroom}/``: a data dir per list, utterance =
speaker = RIR id, wav.scp = absolute RIR path, utt2room = room id. The optional
``real_rirs_isotropic_noises/rir_list`` (same format) gives ``OUT/rirs_real/`` when present (its
multi-channel RIRs are not used by the recipe). Policy: a missing list, or an RIR listed but absent,
stops the script naming the list line.
"""
import argparse
import os

from recipe.voxceleb.local.common import PrepError, require_dir, require_file, write_dir
from subtools.cli import run_cli

SIMULATED = ("smallroom", "mediumroom")


def resolve(path, rirs_dir):
    """A list path ``RIRS_NOISES/x/y.wav`` -> ``<rirs_dir>/x/y.wav`` whatever the directory is called
    here; other relative paths are taken relative to ``rirs_dir``."""
    if os.path.isabs(path):
        return path
    parts = path.split("/", 1)
    return os.path.join(rirs_dir, parts[1] if parts[0] == "RIRS_NOISES" and len(parts) == 2 else path)


def read_rir_list(path, rirs_dir):
    """({rir_id: absolute path}, {rir_id: room_id}) from a rir_list file."""
    wav_scp, utt2room = {}, {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            options = dict(zip(fields[:-1:2], fields[1:-1:2]))
            if len(fields) % 2 == 0 or "--rir-id" not in options or "--room-id" not in options:
                raise PrepError(f"{path}:{lineno}: expected '--rir-id ID --room-id ROOM path.wav'")
            audio = resolve(fields[-1], rirs_dir)
            if not os.path.isfile(audio):
                raise PrepError(f"{path}:{lineno}: RIR listed but absent: {audio}")
            rir, room = options["--rir-id"], options["--room-id"]
            if rir in wav_scp:
                raise PrepError(f"{path}:{lineno}: duplicate RIR id {rir}")
            wav_scp[rir], utt2room[rir] = os.path.abspath(audio), room
    if not wav_scp:
        raise PrepError(f"{path}: no RIRs listed")
    return wav_scp, utt2room


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rirs", required=True, help="the RIRS_NOISES directory")
    parser.add_argument("out", help="output data root")
    args = parser.parse_args()
    require_dir(args.rirs, "--rirs")
    lists = {f"rirs_{room}": require_file(os.path.join(args.rirs, "simulated_rirs", room, "rir_list"),
                                          f"RIRS_NOISES {room} list") for room in SIMULATED}
    real = os.path.join(args.rirs, "real_rirs_isotropic_noises", "rir_list")
    if os.path.isfile(real):
        lists["rirs_real"] = real
    for name, path in lists.items():
        wav_scp, utt2room = read_rir_list(path, args.rirs)
        write_dir(os.path.join(args.out, name), wav_scp, {r: r for r in wav_scp}, durations=False,
                  tables={"utt2room": utt2room})
        print(f"make_rirs: {name}: {len(wav_scp)} RIRs in {len(set(utt2room.values()))} rooms")


if __name__ == "__main__":
    run_cli(main)
