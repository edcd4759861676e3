"""Completion markers of restartable stages.

A stage writes its outputs, then (last, atomically) a marker file holding the options it ran with as
JSON. The stage is complete iff the marker exists and records the same options; otherwise it is redone
(partial outputs are overwritten). Clearing the marker first means a killed rerun is never mistaken for
a complete one.
"""
import json
import os

from subtools.kaldi.fileio import atomic_write


def _normal(options):
    return json.loads(json.dumps(options, sort_keys=True))


def is_complete(marker, options):
    """True if ``marker`` exists and records ``options``."""
    if not os.path.exists(marker):
        return False
    with open(marker) as f:
        try:
            return json.load(f) == _normal(options)
        except json.JSONDecodeError:
            return False


def clear(marker):
    if os.path.exists(marker):
        os.remove(marker)


def mark_complete(marker, options):
    with atomic_write(marker) as f:
        json.dump(_normal(options), f, indent=1, sort_keys=True)
