"""The dashboard: server-rendered pages over the yard's own operations.

Pages are Jinja2 templates; every page works with plain links and forms, and htmx (shipped
in ``static/``, no CDN) makes it live: a page's ``live`` block is polled as a fragment and
links and forms are boosted. A request from htmx's poll (``HX-Request`` without
``HX-Boosted``) gets only that block.

Reading needs what the API needs (see `Access`); every action is a POST carrying a CSRF
token, and the destructive ones (cancel, delete) go through a confirmation page first.
Actions call the same `Yard` methods as the API and the CLI - the dashboard has no business
logic of its own.

Capabilities add their pages with `Dashboard.add_page` and `Dashboard.render`, extending
``layout.html`` (the bulk jobs pages do, in `dashboard_jobs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.staticfiles import StaticFiles

from batchyard.errors import BatchyardError
from batchyard.http.sessions import CSRF_FIELD, Access
from batchyard.overview import Overview
from batchyard.yard import Yard

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PREFIX = "/ui"
LOGIN = f"{PREFIX}/login"
POLL_SECONDS = 2
DEAD_ITEMS_SHOWN = 50  # per dead batch on its base's page; the API pages through the rest

# what an action did, by the code in its redirect (never free text from the URL)
NOTICES = {
    "flushed": "Flush scheduled: a worker delivers the batch shortly.",
    "nothing": "Nothing to flush: no batch is accumulating.",
    "redriven": "Batch redriven: its flush starts again with fresh attempts.",
    "discarded": "Batch discarded: its items will not be delivered (the history says so).",
    "paused": "Job paused.",
    "resumed": "Job resumed from its last checkpoint.",
    "cancelled": "Job cancelled.",
    "deleted": "Job deleted.",
    "run": "Run requested: a worker running this aggregator picks it up.",
    "logged-out": "Logged out.",
}

_SECURITY_HEADERS = {
    # only our own script and stylesheet; no framing, so buttons cannot be clickjacked
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def _action_form(request: Request) -> FormData:
    dashboard: Dashboard = request.app.state.dashboard
    return await dashboard.actor(request)


def _viewer(request: Request) -> None:
    dashboard: Dashboard = request.app.state.dashboard
    dashboard.viewer(request)


# the form of an action that passed the gate (auth and CSRF)
ActionForm = Annotated[FormData, Depends(_action_form)]
# the route options of every page: HTML, for a signed-in viewer
PAGE: dict[str, Any] = {"response_class": HTMLResponse, "dependencies": [Depends(_viewer)]}


class Dashboard:
    """The pages of one yard, behind one `Access`. Install it with `install`."""

    def __init__(self, yard: Yard, access: Access) -> None:
        self.yard = yard
        self.access = access
        self.overview = Overview.of(yard)
        self.env = Environment(loader=FileSystemLoader(TEMPLATES),
                               autoescape=select_autoescape(default=True),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(duration=duration, when=when, url=lambda s: quote(str(s), ""),
                                ago=self._ago)
        self.nav: list[tuple[str, str]] = []
        self.notices = dict(NOTICES)
        self.router = APIRouter(include_in_schema=False)
        self._routes()

    def install(self, app: FastAPI) -> None:
        """Serve the pages and the static files from `app`."""
        app.state.dashboard = self
        app.include_router(self.router)
        app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="dashboard-static")

    def add_page(self, title: str, path: str) -> None:
        """Put a page in the navigation (its route is the caller's)."""
        self.nav.append((title, path))

    def _ago(self, value: datetime | None) -> str:
        if value is None:
            return "never"
        return f"{duration(max(0.0, self.yard.clock.time() - value.timestamp()))} ago"

    # -- rendering and guards -------------------------------------------------------------

    def render(self, request: Request, template: str, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        """A page, or only its ``live`` block for htmx's poll."""
        nonce, new = self.access.csrf_nonce(request)
        notice = request.query_params.get("notice")
        context = {
            "request": request, "nav": self.nav, "prefix": PREFIX, "poll": POLL_SECONDS,
            "csrf_field": CSRF_FIELD, "csrf_token": self.access.csrf_token(nonce),
            "notice": self.notices.get(notice or ""), "now": self.yard.clock.time(),
            "logged_in": self.access.required and self.access.authenticated(request),
            **context,
        }
        page = self.env.get_template(template)
        polled = "hx-request" in request.headers and "hx-boosted" not in request.headers
        if polled and "live" in page.blocks:
            html = "".join(page.blocks["live"](page.new_context(context)))
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

    def act(self, request: Request, action: Callable[[], Any], notice: str,
            back: str) -> Response:
        """Run an action; back to `back` with a notice, or an error page saying why not."""
        try:
            result = action()
        except BatchyardError as exc:
            from batchyard.http.error_handlers import _STATUS  # the API's mapping

            status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
            return self.render(request, "error.html", status, message=str(exc), back=back)
        if isinstance(result, str):
            notice = result
        return RedirectResponse(f"{back}?notice={notice}", status_code=303)

    # -- pages ----------------------------------------------------------------------------

    def _routes(self) -> None:
        get, post = self.router.get, self.router.post
        self.add_page("Overview", "/")
        self.add_page("Batches", f"{PREFIX}/batches")
        self.add_page("Iterator jobs", f"{PREFIX}/iterators")
        self.add_page("Aggregators", f"{PREFIX}/aggregators")

        @get("/", **PAGE)
        def overview(request: Request) -> Response:
            return self.render(request, "overview.html", snap=self.overview.snapshot())

        @get(f"{PREFIX}/batches", **PAGE)
        def batches(request: Request) -> Response:
            return self.render(request, "batches.html", bases=self.overview.bases(),
                               dead=self.yard.list_dead_batches())

        # before the base's page: ids may hold "/", and ".../discard" is discard's page
        self._confirmed_action(
            f"{PREFIX}/batches/{{batch_id:path}}/discard", "batch_discard",
            lambda batch_id: self.yard.discard_batch(batch_id), "discarded",
            "Discard dead batch {}? Its pending items are never delivered; the flush history "
            "records them as dropped.", lambda batch_id: _base_page(batch_id))

        @get(f"{PREFIX}/batches/{{base_id:path}}", **PAGE)
        def batch_base(request: Request, base_id: str) -> Response:
            batches = self.yard.get_batch_status(base_id)
            dead_items = {b.batch_id: self.yard.get_batch_items(b.batch_id,
                                                                limit=DEAD_ITEMS_SHOWN)
                          for b in batches if b.status == "dead"}
            return self.render(request, "batch.html", base_id=base_id, batches=batches,
                               dead_items=dead_items, shown=DEAD_ITEMS_SHOWN,
                               history=self.yard.get_flush_history(base_id, 50))

        @post(f"{PREFIX}/batches/{{batch_id:path}}/flush")
        def flush(request: Request, batch_id: str,
                  form: ActionForm) -> Response:
            def run() -> str:
                return "flushed" if self.yard.flush(batch_id).flushed else "nothing"

            return self.act(request, run, "flushed", _back(form, f"{PREFIX}/batches"))

        @post(f"{PREFIX}/batches/{{batch_id:path}}/redrive")
        def redrive(request: Request, batch_id: str,
                    form: ActionForm) -> Response:
            return self.act(request, lambda: self.yard.redrive_batch(batch_id), "redriven",
                            _back(form, f"{PREFIX}/batches"))

        @get(f"{PREFIX}/iterators", **PAGE)
        def iterators(request: Request) -> Response:
            return self.render(request, "iterators.html", jobs=self.yard.list_iterator_jobs())

        for verb, notice in (("pause", "paused"), ("resume", "resumed")):
            self._iterator_action(verb, notice)

        for verb, method, notice, question in (
            ("cancel", self.yard.cancel_iterator, "cancelled",
             "Cancel iterator job {}? It stops for good "
             "(its checkpoint is kept, but it cannot be resumed)."),
            ("delete", self.yard.delete_iterator_job, "deleted",
             "Delete iterator job {} and its checkpoint?"),
        ):
            self._confirmed_action(f"{PREFIX}/iterators/{{job_id:path}}/{verb}",
                                   f"iterator_{verb}", method, notice, question,
                                   lambda job_id: f"{PREFIX}/iterators")

        # after the actions' pages: ids may hold "/", and ".../cancel" is cancel's page
        @get(f"{PREFIX}/iterators/{{job_id:path}}", **PAGE)
        def iterator(request: Request, job_id: str) -> Response:
            try:
                job = self.yard.get_iterator_status(job_id)
            except BatchyardError as exc:
                return self.render(request, "error.html", 404, message=str(exc),
                                   back=f"{PREFIX}/iterators")
            return self.render(request, "iterator.html", job=job)

        @get(f"{PREFIX}/aggregators", **PAGE)
        def aggregators(request: Request) -> Response:
            return self.render(request, "aggregators.html",
                               aggregators=self.overview.aggregators())

        @post(f"{PREFIX}/aggregators/{{name:path}}/run")
        def run_aggregator(request: Request, name: str,
                           form: ActionForm) -> Response:
            return self.act(request, lambda: self.yard.request_aggregator_run(name), "run",
                            f"{PREFIX}/aggregators")

        self._login_routes()

    def _iterator_action(self, verb: str, notice: str) -> None:
        def action(request: Request, job_id: str,
                   form: ActionForm) -> Response:
            method = getattr(self.yard, f"{verb}_iterator")
            return self.act(request, lambda: method(job_id), notice,
                            _back(form, f"{PREFIX}/iterators/{quote(job_id, '')}"))

        self.router.post(f"{PREFIX}/iterators/{{job_id:path}}/{verb}", name=f"iterator_{verb}")(
            action)

    def _confirmed_action(self, path: str, name: str, method: Callable[[str], Any],
                          notice: str, question: str, back: Callable[[str], str]) -> None:
        """A destructive action on the object whose id is the path's one parameter: its
        GET asks `question` first, and only the confirmation page's form (confirm=yes)
        runs `method(id)`."""
        verb = path.rsplit("/", 1)[-1]

        def ask(request: Request) -> Response:
            ident = _path_id(request)
            return self.render(request, "confirm.html", question=question.format(ident),
                               button=f"Yes, {verb}", action=request.url.path,
                               back=back(ident))

        def act(request: Request, form: ActionForm) -> Response:
            if form.get("confirm") != "yes":
                return ask(request)
            ident = _path_id(request)
            return self.act(request, lambda: method(ident), notice, back(ident))

        self.router.get(path, response_class=HTMLResponse, name=f"{name}_ask",
                        dependencies=[Depends(_viewer)])(ask)
        self.router.post(path, name=name)(act)

    def _login_routes(self) -> None:
        @self.router.get(LOGIN, response_class=HTMLResponse)
        def login_form(request: Request) -> Response:
            if not self.access.required:
                return RedirectResponse("/", status_code=303)
            return self.render(request, "login.html", next=_local(
                request.query_params.get("next"), "/"), error=None)

        @self.router.post(LOGIN)
        async def login(request: Request) -> Response:
            form = await request.form()
            token, target = form.get(CSRF_FIELD), _local(form.get("next"), "/")
            refusal = self.access.csrf_refusal(request, token if isinstance(token, str)
                                               else None)
            if refusal:
                raise HTTPException(403, refusal)
            client = request.client.host if request.client else ""
            wait = math.ceil(self.access.login_wait(client))
            if wait:
                response = self.render(request, "login.html", 429, next=target,
                                       error=f"Too many failed logins from your address: "
                                             f"try again in {wait} s.")
                response.headers["Retry-After"] = str(wait)
                return response
            candidate = form.get("token")
            if not isinstance(candidate, str) or not self.access.token_valid(candidate):
                self.access.login_failed(client)
                return self.render(request, "login.html", 401, next=target,
                                   error="That is not a valid API token.")
            redirect = RedirectResponse(target, status_code=303)
            self.access.start_session(request, redirect, candidate)
            return redirect

        @self.router.post(f"{PREFIX}/logout")
        def logout(request: Request, form: ActionForm) -> Response:
            response = RedirectResponse(f"{LOGIN}?notice=logged-out", status_code=303)
            self.access.end_session(response)
            return response


def _local(path: object, default: str) -> str:
    """`path` if it is a path on this site (never another host), else `default`."""
    if isinstance(path, str) and path.startswith("/") and not path.startswith("//") \
            and "\\" not in path:
        return path
    return default


def _path_id(request: Request) -> str:
    """The one id parameter of a confirmed action's path."""
    [ident] = request.path_params.values()
    return str(ident)


def _base_page(batch_id: str) -> str:
    """The dashboard page of a batch's base id."""
    return f"{PREFIX}/batches/{quote(batch_id.partition('::')[0], '')}"


def _back(form: FormData, default: str) -> str:
    return _local(form.get("back"), default)


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


def when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")
