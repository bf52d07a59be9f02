"""Batchyard's route over handler limits: each limited handler's limits and load, as the
store sees them across every worker."""

from __future__ import annotations

from fastapi import APIRouter, Request

from batchyard.tasks.limits import HandlerLoad
from batchyard.yard import Yard

router = APIRouter(tags=["handlers"])


@router.get("/handlers")
def handler_loads(request: Request) -> list[HandlerLoad]:
    """Limited handlers: their limits, the calls in flight (across the fleet), the starts in
    the rate window, and the flushes due that wait for room."""
    yard: Yard = request.app.state.yard
    return yard.handler_loads()
