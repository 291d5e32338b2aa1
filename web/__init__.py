"""The web side of Guichet (optional extra `guichet[web]`): `guichet preview`, a local server to
play a procedure in a browser (web/preview.py). The only package importing FastAPI, Starlette
and uvicorn; it builds on the engine and the renderers, which never import it."""

from .preview import create_app, run

__all__ = ["create_app", "run"]
