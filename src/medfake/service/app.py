"""The FastAPI application: middleware (body cap, API keys, CORS), error handlers, routes and the web page.

`create_app(settings)` builds a fresh app; `medfake serve` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import traceback
import uuid
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..io.errors import MedfakeError
from ..settings import Settings, get_settings
from .jobs import JobManager
from .limits import BodyTooLarge

log = logging.getLogger("medfake.service")
WEB_DIR = Path(__file__).resolve().parent / "web"
OPEN_PATHS = ("/healthz", "/readyz", "/", "/index.html", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)


def _json_error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class BodyLimitMiddleware:
    """Caps the request body: a declared Content-Length over the cap → 413 before reading; a streamed body is
    counted as it arrives and cut off at the cap (→ 413)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        msg = f"request body exceeds the upload limit of {self.max_bytes} bytes"
        if cl is not None:
            try:
                declared = int(cl)
            except ValueError:
                return await _json_error(400, "invalid Content-Length header")(scope, receive, send)
            if declared > self.max_bytes:
                return await _json_error(413, msg, {"Connection": "close"})(scope, receive, send)
        seen = 0
        started = exceeded = False

        async def counting_receive():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            # once the cap was hit, whatever the app answers (e.g. a body-parsing 400) becomes our 413
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _json_error(413, msg, {"Connection": "close"})(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                started = True
                await _json_error(413, msg, {"Connection": "close"})(scope, receive, send)


class APIKeyMiddleware:
    """When keys are configured, every path except the health checks and the static page needs X-API-Key."""

    def __init__(self, app, keys: tuple[str, ...]):
        self.app, self.keys = app, tuple(k.strip() for k in keys if k.strip())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.keys or scope.get("method") == "OPTIONS":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        given = ""
        for k, v in scope.get("headers") or []:
            if k == b"x-api-key":
                given = v.decode("latin-1").strip()
        if not given or not any(hmac.compare_digest(given.encode(), k.encode()) for k in self.keys):
            return await _json_error(401, "missing or invalid API key (send it in the X-API-Key header)",
                                     {"WWW-Authenticate": "X-API-Key"})(scope, receive, send)
        return await self.app(scope, receive, send)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = list(e.get("loc", ()))
        loc = ".".join(str(x) for x in (loc[1:] if loc and loc[0] in ("body", "query", "path", "form") else loc))
        parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts) if parts else "invalid request"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    from .backends import redact

    jobs = JobManager(settings.job_workers, settings.job_queue, settings.job_timeout_s, settings.result_ttl_s,
                      redact=lambda text: redact(text, settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async def sweeper():
            period = max(1.0, min(30.0, settings.result_ttl_s / 4))
            while True:
                await asyncio.sleep(period)
                jobs.sweep()

        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            jobs.shutdown()

    app = FastAPI(
        title="medfake", version=__version__, lifespan=lifespan,
        description="Synthesize, manipulate and detect deepfake medical images. Choose models by name "
                    "(GET /v1/models); send `X-API-Key` when the server has keys configured.",
    )
    app.state.settings = settings
    app.state.jobs = jobs

    # ---------------------------------------------------------------- errors: JSON {"detail": ...}, no traces
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _json_error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _json_error(422, _validation_detail(exc))

    @app.exception_handler(MedfakeError)
    async def medfake_error(request: Request, exc: MedfakeError):
        return _json_error(422, redact(str(exc), settings))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        eid = uuid.uuid4().hex[:12]
        # type and code frames only: exception messages may carry file or patient data
        log.error("unhandled %s on %s %s (error id %s)\n%s", type(exc).__name__, request.method, request.url.path,
                  eid, "".join(traceback.format_tb(exc.__traceback__)))
        return _json_error(500, f"internal server error (error id {eid})")

    # ---------------------------------------------------------------- routes
    from .routes_compat import router as compat_router
    from .routes_v1 import router as v1_router

    app.include_router(v1_router)
    app.include_router(compat_router)

    @app.get("/healthz", tags=["health"])
    async def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    async def readyz():
        from starlette.concurrency import run_in_threadpool

        from .backends import model_check

        rows = await run_in_threadpool(model_check, settings)
        ok = bool(rows) and all(r["ok"] for r in rows)
        body = {"status": "ready" if ok else "not ready", "models": rows}
        if not rows:
            body["problem"] = "no model cards found in the models folder"
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    # ---------------------------------------------------------------- middleware (last added = outermost)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(APIKeyMiddleware, keys=settings.api_keys)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        # credentials (cookies) are never allowed: the API key travels in a header the origin list gates
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["X-API-Key", "Content-Type"])
    return app
