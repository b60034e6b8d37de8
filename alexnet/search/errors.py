"""How the sweeper refuses a setting no search could use: one `error:` line and exit status 2
(as argparse does), before any trial, in any app: a SystemExit, which Hydra and the app let
through without a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_STATUS = 2


class SettingError(ValueError):
    """A sweeper setting that cannot work; its message names the key and a value that would."""


def refuse(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS)
