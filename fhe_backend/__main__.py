"""``python -m fhe_backend``: run the CLI and end the process with the command's exit status.

This is the one entry point (the ``fhe-audit`` console script names :func:`run` too), because
the status needs care: once a circuit has run, ``concrete.compiler``'s ``atexit`` hook ends the
process with status 0, whatever the command returned. So :func:`run` flushes the output, runs
the other exit handlers itself, and ends the process with the command's own status:
0 success or verified, 1 not verified, inconclusive or refused, 2 error, 130 interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .cli import EXIT_ERROR, EXIT_INTERRUPTED, main


def run(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception:  # a bug: keep its traceback, but never report success
        traceback.print_exc()
        code = EXIT_ERROR
    _exit(code)


def drop_concrete_exit_hook() -> None:
    """Unregister ``concrete.compiler``'s atexit hook. Its only job is to stop Concrete's
    dataflow runtime, which we never start; left registered, it ends the process with status 0
    once a circuit has run (the CLI's status, and pytest's, would be lost)."""
    compiler = sys.modules.get("concrete.compiler")
    hook = getattr(compiler, "_terminate_df_parallelization", None)
    if hook is not None:
        atexit.unregister(hook)


def _exit(code: int) -> NoReturn:
    drop_concrete_exit_hook()
    try:
        atexit._run_exitfuncs()  # temp folders, logging, tqdm: everything else still runs
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    run()
