"""`medfake serve`: the FastAPI service and web page under uvicorn."""

from __future__ import annotations

import typer

from ._app import app, fail


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 exposes it on the network)"),
    port: int = typer.Option(8000, help="TCP port"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
):
    """Serve the API (/v1, /docs) and the web page (/) — settings come from MEDFAKE_* variables."""
    import logging

    import uvicorn

    from ..service import create_app
    from ..settings import get_settings

    if not 0 < port < 65536:
        fail(f"port must be 1..65535, got {port}")
    settings = get_settings()
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_keys:
        logging.getLogger("medfake.service").warning(
            "serving on %s without API keys; set MEDFAKE_API_KEYS to require X-API-Key", host)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, server_header=False)
