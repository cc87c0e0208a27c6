"""The `medfake` command. Each stage adds its commands in its own module (thin shells over public APIs)."""

from __future__ import annotations

import sys

from ._app import app, train_app  # noqa: F401
from . import synth as _synth  # noqa: F401,E402
from . import manipulate as _manipulate  # noqa: F401,E402
from . import detect as _detect  # noqa: F401,E402
from . import evaluate as _evaluate  # noqa: F401,E402
from . import serve as _serve  # noqa: F401,E402
from . import demo as _demo  # noqa: F401,E402


def main() -> None:
    from ..io.errors import MedfakeError

    try:
        app()
    except MedfakeError as e:  # user-actionable: one line, no traceback
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {e}")
        sys.exit(2)
