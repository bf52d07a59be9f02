"""Health checks: is the store reachable, is its schema current, is a worker alive?

`batchyard healthcheck` prints one line per check and exits 1 when any fails; the app's
``/readyz`` answers 503 with the same checks. A check never changes anything: in particular
it does not migrate a store whose schema is behind, it reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchyard.clock import Clock
from batchyard.overview import Overview
from batchyard.store import Store

DEFAULT_MAX_HEARTBEAT_AGE = 60.0


@dataclass(frozen=True)
class Check:
    """One check's verdict, with a line a person can act on."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<8} {self.detail}"


def run_checks(
    store: Store,
    *,
    max_heartbeat_age: float | None = DEFAULT_MAX_HEARTBEAT_AGE,
    clock: Clock | None = None,
) -> list[Check]:
    """Check `store`; with `max_heartbeat_age` (seconds), also that some worker beat within
    that bound. Failures are reported, never raised."""
    try:
        version, latest = store.schema_version(), store.latest_version()
    except Exception as exc:
        checks = [
            Check("store", False, f"unreachable: {_reason(exc)}"),
            Check("schema", False, "not checked: the store is unreachable"),
        ]
        if max_heartbeat_age is not None:
            checks.append(Check("workers", False, "not checked: the store is unreachable"))
        return checks
    checks = [Check("store", True, f"reachable ({store.dialect})")]
    if version == latest:
        checks.append(Check("schema", True, f"version {version} (current)"))
    else:
        checks.append(
            Check(
                "schema",
                False,
                f"version {version}, this batchyard needs {latest}: run `batchyard db upgrade`",
            )
        )
    if max_heartbeat_age is not None:
        checks.append(_workers(store, clock, max_heartbeat_age, schema_ok=version == latest))
    return checks


def _workers(store: Store, clock: Clock | None, bound: float, schema_ok: bool) -> Check:
    if not schema_ok:
        return Check("workers", False, "not checked: the schema is not current")
    try:
        workers = Overview(store, clock).workers()
    except Exception as exc:
        return Check("workers", False, f"cannot read workers: {_reason(exc)}")
    if not workers:
        return Check("workers", False, "no worker is registered")
    newest = min(w.heartbeat_age_seconds for w in workers)
    if newest > bound:
        return Check(
            "workers",
            False,
            f"no heartbeat within {bound:g} s "
            f"(newest {newest:.1f} s ago, {len(workers)} registered)",
        )
    alive = sum(1 for w in workers if w.heartbeat_age_seconds <= bound)
    return Check("workers", True, f"{alive} alive, newest heartbeat {newest:.1f} s ago")


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
