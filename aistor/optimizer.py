#!/usr/bin/env python3
"""The small-file accelerator ("AIStor sidecar"): runs `robolake accelerator serve`.

Usage: .venv/bin/python aistor/optimizer.py [serve options]   (see --help)
The cache's disk tier defaults to aistor/cache/ next to this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from robolake.cli.accelerator import main
except ImportError:  # not installed: tell the user how, instead of a traceback
    sys.exit("robolake is not installed in this Python; run ./deploy-local.sh, then use .venv/bin/python")

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        args = ["serve", *args]
    if args[0] == "serve" and not any(a.startswith("--cache-dir") for a in args):
        args += ["--cache-dir", str(Path(__file__).resolve().parent / "cache")]
    sys.argv = [sys.argv[0], *args]
    main()
