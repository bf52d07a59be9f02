"""What every dashboard page uses: the `Dashboard` (templates, rendering in the page shell
``layout.html``, the guards) and the helpers for routes, actions and confirmations.

Pages are Jinja2 templates; every page works with plain links and forms, and htmx (shipped
in ``static/``, no CDN) makes it live: a page's ``live`` block is polled as a fragment and
links and forms are boosted. A request from htmx's poll (``HX-Request`` without
``HX-Boosted``) gets only that block.

Reading needs what the API needs (see `Access`); every action is a POST carrying a CSRF
token, and the destructive ones (cancel, delete) go through a confirmation page first.
Actions call the same `Yard` methods as the API and the CLI - the dashboard has no business
logic of its own.

Page modules hold module-level routers; a route finds the one `Dashboard` of its app with
`dashboard_of(request)`, so one set of routes serves every app `create_app` makes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData

from batchyard.errors import BatchyardError
from batchyard.http.error_handlers import status_of
from batchyard.http.sessions import CSRF_FIELD, Access
from batchyard.overview import Overview
from batchyard.yard import Yard

HTTP_PACKAGE = Path(__file__).parent.parent  # templates/ and static/ sit beside the routes
TEMPLATES = HTTP_PACKAGE / "templates"
STATIC = HTTP_PACKAGE / "static"
PREFIX = "/ui"
LOGIN = f"{PREFIX}/login"
POLL_SECONDS = 2

_SECURITY_HEADERS = {
    # only our own script and stylesheet; no framing, so buttons cannot be clickjacked
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Dashboard:
    """The pages of one yard, behind one `Access`: `nav` lists (title, path) of the pages in
    the navigation, `notices` what an action did by the code in its redirect."""

    def __init__(
        self, yard: Yard, access: Access, nav: list[tuple[str, str]], notices: dict[str, str]
    ) -> None:
        self.yard = yard
        self.access = access
        self.overview = Overview.of(yard)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            duration=duration,
            when=when,
            url=lambda s: quote(str(s), ""),
            ago=self._ago,
            until=self._until,
            bytes=size_in_bytes,
        )
        self.nav = nav
        self.notices = notices

    def _ago(self, value: datetime | None) -> str:
        if value is None:
            return "never"
        return f"{duration(max(0.0, self.yard.clock.time() - value.timestamp()))} ago"

    def _until(self, value: datetime | None) -> str:
        if value is None:
            return "never"
        left = value.timestamp() - self.yard.clock.time()
        return f"in {duration(left)}" if left > 0 else "due now"

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page, or only one block of it for htmx's poll: the block named like the
        element the poll swaps (``HX-Target``), else the ``live`` block."""
        nonce, new = self.access.csrf_nonce(request)
        notice = request.query_params.get("notice")
        context = {
            "request": request,
            # the page as asked, filters and page included: what the live region polls
            "here": str(request.url.replace(scheme="", netloc="")),
            "nav": self.nav,
            "prefix": PREFIX,
            "poll": POLL_SECONDS,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.access.csrf_token(nonce),
            "notice": self.notices.get(notice or ""),
            "now": self.yard.clock.time(),
            "logged_in": self.access.required and self.access.authenticated(request),
            **context,
        }
        page = self.env.get_template(template)
        polled = "hx-request" in request.headers and "hx-boosted" not in request.headers
        block = request.headers.get("hx-target", "")
        block = block if block in page.blocks and block != "content" else "live"
        if polled and block in page.blocks:
            html = "".join(page.blocks[block](page.new_context(context)))
        else:
            html = page.render(context)
        response = HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)
        if new:
            self.access.keep_nonce(request, response, nonce)
        return response

    def viewer(self, request: Request) -> None:
        """Dependency of every page: an API token holder, when tokens are configured."""
        if self.access.authenticated(request):
            return
        login = f"{LOGIN}?next={quote(request.url.path)}"
        if "hx-request" in request.headers:
            raise HTTPException(401, "log in first", headers={"HX-Redirect": login})
        raise HTTPException(303, "log in first", headers={"Location": login})

    async def actor(self, request: Request) -> FormData:
        """Dependency of every action: authenticated, and not forged by another site."""
        if not self.access.authenticated(request):
            raise HTTPException(401, "log in first: actions need an API token")
        form = await request.form()
        token = form.get(CSRF_FIELD)
        refusal = self.access.csrf_refusal(request, token if isinstance(token, str) else None)
        if refusal:
            raise HTTPException(403, refusal)
        return form

    def act(self, request: Request, action: Callable[[], Any], notice: str, back: str) -> Response:
        """Run an action; back to `back` with a notice, or an error page saying why not."""
        try:
            result = action()
        except BatchyardError as exc:
            return self.render(request, "error.html", status_of(exc), message=str(exc), back=back)
        if isinstance(result, str):
            notice = result
        return RedirectResponse(f"{back}?notice={notice}", status_code=303)


def dashboard_of(request: Request) -> Dashboard:
    """The dashboard of the app serving `request`."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def viewer(request: Request) -> None:
    """Dependency of every page: see `Dashboard.viewer`."""
    dashboard_of(request).viewer(request)


async def _action_form(request: Request) -> FormData:
    return await dashboard_of(request).actor(request)


# the form of an action that passed the gate (auth and CSRF)
ActionForm = Annotated[FormData, Depends(_action_form)]
# the route options of every page: HTML, for a signed-in viewer
PAGE: dict[str, Any] = {"response_class": HTMLResponse, "dependencies": [Depends(viewer)]}


def confirmed_action(
    router: APIRouter,
    path: str,
    name: str,
    method: Callable[[Yard, str], Any],
    notice: str,
    question: str,
    back: Callable[[str], str],
) -> None:
    """A destructive action on the object whose id is the path's one parameter: its GET
    asks `question` first, and only the confirmation page's form (confirm=yes) runs
    `method(yard, id)`."""
    verb = path.rsplit("/", 1)[-1]

    def ask(request: Request) -> Response:
        ident = _path_id(request)
        return dashboard_of(request).render(
            request,
            "confirm.html",
            question=question.format(ident),
            button=f"Yes, {verb}",
            action=request.url.path,
            back=back(ident),
        )

    def act(request: Request, form: ActionForm) -> Response:
        if form.get("confirm") != "yes":
            return ask(request)
        ident = _path_id(request)
        dashboard = dashboard_of(request)
        return dashboard.act(request, lambda: method(dashboard.yard, ident), notice, back(ident))

    router.get(
        path, response_class=HTMLResponse, name=f"{name}_ask", dependencies=[Depends(viewer)]
    )(ask)
    router.post(path, name=name)(act)


def _path_id(request: Request) -> str:
    """The one id parameter of a confirmed action's path."""
    [ident] = request.path_params.values()
    return str(ident)


def local_path(path: object, default: str) -> str:
    """`path` if it is a path on this site (never another host), else `default`."""
    if (
        isinstance(path, str)
        and path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
    ):
        return path
    return default


def back_to(form: FormData, default: str) -> str:
    """Where an action's form asks to go back to, if that is on this site."""
    return local_path(form.get("back"), default)


def duration(value: float | None) -> str:
    """Seconds as people read them: 120 ms, 4.2 s, 3 min 4 s, 2 h 5 min."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    if value < 86400:
        return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"
    return f"{int(value // 86400)} d {int(value % 86400 // 3600)} h"


def size_in_bytes(value: int | None) -> str:
    """A byte count as people read it, exact below 10 KB: 812 B, 9,300 B, 63.5 KB, 9.8 MB."""
    if value is None:
        return "-"
    if value < 10_000:
        return f"{value:,} B"
    if value < 10_000_000:
        return f"{value / 1000:.1f} KB"
    return f"{value / 1_000_000:.1f} MB"


def when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")
