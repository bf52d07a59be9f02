"""The dashboard's login and logout: an API token, once, for a session cookie (needed only
when tokens are configured; failed logins are throttled per address)."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from batchyard.http.dashboard._common import (
    LOGIN,
    PREFIX,
    ActionForm,
    dashboard_of,
    local_path,
)
from batchyard.http.sessions import CSRF_FIELD

NOTICES = {"logged-out": "Logged out."}

router = APIRouter(include_in_schema=False)


@router.get(LOGIN, response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    dashboard = dashboard_of(request)
    if not dashboard.access.required:
        return RedirectResponse("/", status_code=303)
    return dashboard.render(
        request, "login.html", next=local_path(request.query_params.get("next"), "/"), error=None
    )


@router.post(LOGIN)
async def login(request: Request) -> Response:
    dashboard = dashboard_of(request)
    access = dashboard.access
    form = await request.form()
    token, target = form.get(CSRF_FIELD), local_path(form.get("next"), "/")
    refusal = access.csrf_refusal(request, token if isinstance(token, str) else None)
    if refusal:
        raise HTTPException(403, refusal)
    client = request.client.host if request.client else ""
    wait = math.ceil(access.login_wait(client))
    if wait:
        response = dashboard.render(
            request,
            "login.html",
            429,
            next=target,
            error=f"Too many failed logins from your address: try again in {wait} s.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    candidate = form.get("token")
    if not isinstance(candidate, str) or not access.token_valid(candidate):
        access.login_failed(client)
        return dashboard.render(
            request, "login.html", 401, next=target, error="That is not a valid API token."
        )
    redirect = RedirectResponse(target, status_code=303)
    access.start_session(request, redirect, candidate)
    return redirect


@router.post(f"{PREFIX}/logout")
def logout(request: Request, form: ActionForm) -> Response:
    response = RedirectResponse(f"{LOGIN}?notice=logged-out", status_code=303)
    dashboard_of(request).access.end_session(response)
    return response
