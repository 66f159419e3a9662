"""The web console at ``/ui``: static HTML, CSS and JavaScript shipped in the package (no build step, no CDN).

It calls the same ``/v1`` routes with the key the user types in, so it has exactly that key's tenant and role.
Every file is served with a Content-Security-Policy that allows only this origin's own script and style files (no
inline script, no other site), and with no framing, so an injected string can neither run nor phone home.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

FOLDER = Path(__file__).parent
# blob: media for playing back a microphone recording; data: images for none but the browser's own icons
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """The console's files, each answered with :data:`HEADERS`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the console at ``/ui/`` (``/ui`` redirects there, so its relative links resolve under it)."""

    @app.get("/ui", include_in_schema=False)
    async def console() -> RedirectResponse:
        return RedirectResponse("/ui/", headers=HEADERS)

    app.mount("/ui/", ConsoleFiles(directory=FOLDER, html=True), name="console")
