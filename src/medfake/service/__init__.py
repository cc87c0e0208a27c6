"""The HTTP service: FastAPI app (v1 API, MedXFake-compatible endpoints, jobs) and the static web page."""

from .app import create_app

__all__ = ["create_app"]
