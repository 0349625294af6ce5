"""The web server behind `fluxtui serve`: textual-serve, with the door locked.

Whoever reaches the port can start and stop training, so, like Jupyter:
- a random token is made at start and printed in the URL; the page (/?token=...) and the
  websocket (/ws/<token>) refuse a request without it;
- a websocket whose Origin is not the page's own is refused (another site open in the same
  browser cannot drive the app);
- on loopback, a Host header that is not a loopback name is refused (DNS rebinding);
- the page loads nothing from outside the machine: our own template (serve_page.html), the
  font and scripts from textual-serve's local static folder;
- the terminal's text is in the page for screen readers (xterm's screen-reader mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server, to_int

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PAGE = "serve_page.html"


def _hostname(host: str) -> str:
    """'localhost:8000' -> 'localhost', '[::1]:8000' -> '::1'."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# textual-serve's bundle builds its xterm.js terminal with these options; adding
# screenReaderMode puts the screen's text into the page (xterm's accessibility tree), for
# screen readers and for the browser test that reads it through the DOM.
_XTERM_OPTIONS = "fontFamily:\"'Roboto Mono', Monaco, 'Courier New', monospace\""


def accessible_textual_js(path: Path) -> bytes:
    """textual-serve's script with the terminal's screen-reader mode on (unchanged when a
    new textual-serve builds it differently: the page works, only without the text)."""
    script = path.read_text(encoding="utf-8")
    return script.replace(_XTERM_OPTIONS, _XTERM_OPTIONS + ",screenReaderMode:!0", 1).encode()


class GuardedServer(Server):
    def __init__(self, command: str, *, host: str, port: int, title: str, token: str | None = None):
        super().__init__(command, host=host, port=port, title=title, templates_path=Path(__file__).parent)
        self.token = token or secrets.token_urlsafe(24)
        self.loopback = host in LOOPBACK
        self.textual_js = accessible_textual_js(self.statics_path / "js" / "textual.js")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def _token_ok(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_host])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws/{token}", self.handle_websocket, name="websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.get("/static/js/textual.js", self.handle_textual_js),  # before the folder: ours wins
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        return app

    @web.middleware
    async def _check_host(self, request: web.Request, handler):
        if self.loopback and _hostname(request.host) not in LOOPBACK:
            raise web.HTTPForbidden(text=f"fluxtui serve answers on {', '.join(sorted(LOOPBACK))} only\n")
        return await handler(request)

    async def on_startup(self, app: web.Application) -> None:
        pass  # textual-serve prints its banner here, before the port is bound: see serve()

    def serve(self, debug: bool = False) -> None:
        """textual-serve's serve(), announcing the URL once the port really listens."""
        self.debug = debug
        self.initialize_logging()
        try:
            loop = asyncio.get_event_loop()
        except Exception:
            loop = asyncio.new_event_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, self.request_exit)
            loop.add_signal_handler(signal.SIGTERM, self.request_exit)
        web.run_app(
            self._make_app(),
            host=self.host,
            port=self.port,
            handle_signals=False,
            loop=loop,
            print=lambda *_: self.announce(),  # aiohttp calls it after the site has started
        )

    def announce(self) -> None:
        print(f"fluxtui serve: open {self.url}", flush=True)
        print("Ctrl+C stops the server (a run it started goes on)", flush=True)

    async def handle_index(self, request: web.Request) -> web.Response:
        if not self._token_ok(request.query.get("token")):
            raise web.HTTPForbidden(text="open the URL that `fluxtui serve` printed: it carries the token\n")
        context: dict[str, Any] = {
            "title": self.title,
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            # relative to the host the browser used, so localhost and 127.0.0.1 both work
            "websocket_url": f"ws://{request.host}/ws/{self.token}",
            "static": "/static/",
        }
        return aiohttp_jinja2.render_template(PAGE, request, context)

    async def handle_textual_js(self, request: web.Request) -> web.Response:
        return web.Response(body=self.textual_js, content_type="application/javascript")

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        if not self._token_ok(request.match_info.get("token")):
            raise web.HTTPForbidden(text="wrong or missing token\n")
        origin = request.headers.get("Origin")
        # browsers always send Origin; a script without one still needs the token
        if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
            raise web.HTTPForbidden(text=f"websocket from a foreign origin ({origin}) refused\n")
        return await super().handle_websocket(request)
