"""ASV-subtools-style speaker verification in Python and PyTorch (see README.md)."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
