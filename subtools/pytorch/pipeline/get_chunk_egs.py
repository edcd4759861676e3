#!/usr/bin/env python3
"""Make chunk egs of a Kaldi data dir (launcher stage 2), as ASV-subtools get_chunk_egs.py.

    python3 subtools/pytorch/pipeline/get_chunk_egs.py [options] DATA EGS_DIR

Writes EGS_DIR/{train.egs.csv, valid.egs.csv, info/{feat_dim,num_targets,num_frames}, spk2int, .done};
see subtools/pytorch/libs/egs/egs.py and samples.py for the format and the sampling rules. Holds the lock
of EGS_DIR (another run on it: stop, or --wait).
"""
import argparse
import sys

from subtools.cli import run_cli
from subtools.kaldi.lock import WAIT_HELP, locked
from subtools.pytorch.libs.egs.egs import make_chunk_egs
from subtools.pytorch.libs.support.utils import setup_logging


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunk-size", type=int, default=200, help="frames per chunk")
    p.add_argument("--overlap", type=float, default=0.1, help="overlap of sequential chunks, fraction of chunk")
    p.add_argument("--scale", type=float, default=1.5, help="chunks per speaker = int(total // spks * scale)")
    p.add_argument("--chunk-num", type=int, default=-1,
                   help="chunks per speaker: -1 int(total // spks * scale), 0 the largest count, k>0 exactly k")
    p.add_argument("--valid-spks", type=int, default=1024, help="speakers giving 1 validation utterance each")
    p.add_argument("--valid-chunks-per-utt", type=int, default=2)
    p.add_argument("--seed", type=int, default=1024)
    p.add_argument("--drop-last", action="store_true", help="no extra tail chunk per utterance")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.add_argument("data_dir")
    p.add_argument("egs_dir")
    args = p.parse_args(argv)
    setup_logging()
    run_cli(run, args)


def run(args):
    """Make the egs, holding the lock of EGS_DIR."""
    with locked(args.egs_dir, args.wait, f"egs dir {args.egs_dir}"):
        make_chunk_egs(args.data_dir, args.egs_dir, args.chunk_size, args.overlap, args.scale, args.valid_spks,
                       args.valid_chunks_per_utt, args.seed, args.drop_last, args.chunk_num)


if __name__ == "__main__":
    sys.exit(main())
