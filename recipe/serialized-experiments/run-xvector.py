#!/usr/bin/env python3
"""x-vector baselines (statistics pooling, attentive statistics pooling): stages 0-4.

Thin wrapper of subtools/pytorch/launcher/stages.py with the default config conf/xvector-stats.yaml;
the attentive-pooling baseline is the same script with another config:

    python3 recipe/serialized-experiments/run-xvector.py --stage=0 --gpu-id=0
    python3 recipe/serialized-experiments/run-xvector.py --config conf/xvector-attentive.yaml --gpu-id=0
"""
import sys

from subtools.pytorch.launcher.stages import main

if __name__ == "__main__":
    sys.exit(main(default_config="conf/xvector-stats.yaml", description=__doc__))
