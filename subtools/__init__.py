"""ASV-subtools-style speaker verification in Python and PyTorch (see README.md)."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_path(path):
    """A path from a config or the command line: as given when absolute or present (relative to the working
    dir), else relative to the repo root when present there, else as given (so that a message names it)."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    in_repo = os.path.join(REPO_ROOT, path)
    return in_repo if os.path.exists(in_repo) else path
