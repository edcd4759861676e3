#!/usr/bin/env python3
"""Serialized multi-layer multi-head attention x-vector (Zhu, Lee, Li 2021): stages 0-4.

Thin wrapper of subtools/pytorch/launcher/stages.py with the default config
conf/serialized-tdnn-xvector.yaml, e.g.

    python3 recipe/serialized-experiments/runSerialized-tdnn-xvector.py --stage=0 --gpu-id=0
    python3 recipe/serialized-experiments/runSerialized-tdnn-xvector.py --config conf/mini-serialized.yaml
"""
import sys

from subtools.pytorch.launcher.stages import main

if __name__ == "__main__":
    sys.exit(main(default_config="conf/serialized-tdnn-xvector.yaml", description=__doc__))
