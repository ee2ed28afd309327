"""The web console: the stack, its versions and metrics, and an episode browser, in one place.

    robolake console [--host 127.0.0.1] [--port 9030]      (also started by `robolake stack up`)

Modules: ``views`` (stack, versions, diff, metrics and benchmark data, read through the library),
``episodes`` (the episode browser's reads at one commit), ``ranges`` (HTTP Range), ``html`` and
``pages`` (the pages), ``routes`` (pages, /api/ JSON, media), ``server`` (the app: auth off
loopback, errors as pages, serving) and ``static/`` (the browser's script and style, written for
this console: no front-end library, nothing fetched from elsewhere at run time). It holds no logic
of its own beyond presentation: every figure comes from robolake.stack, robolake.versioning,
robolake.ml's replay-buffer reader, the results bucket or Prometheus's HTTP API.
"""

from robolake.console.server import ConsoleConfig, console_app, run_console
from robolake.console.views import Lake

__all__ = ["ConsoleConfig", "Lake", "console_app", "run_console"]
