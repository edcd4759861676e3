"""What every command-line script does with an error the user can act on (bad input, a missing file, a
locked output, a refused option): end with one line naming the file, line, utterance or key, and exit
status 1, never a traceback. ``SUBTOOLS_TRACEBACK=1`` in the environment shows the traceback instead
(for reporting a bug).

    if __name__ == "__main__":
        run_cli(main)
"""
import os
import subprocess
import sys

USER_ERRORS = (ValueError, OSError, RuntimeError)


def run_cli(main, *args):
    """``main(*args)``; a :data:`USER_ERRORS` exception becomes ``"<script>: error: <message>"`` and exit 1."""
    try:
        return main(*args)
    except subprocess.CalledProcessError as e:
        if os.environ.get("SUBTOOLS_TRACEBACK"):
            raise
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {' '.join(map(str, e.cmd))} failed with exit code "
                 f"{e.returncode} (its messages are above)")
    except USER_ERRORS as e:
        if os.environ.get("SUBTOOLS_TRACEBACK"):
            raise
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {e}")
