"""Aggregators on one runtime: register, run (fold, apply, move the cursor), read, reset."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.aggregator.records import (
    RUN_TASK,
    AggregatorConfig,
    AggregatorRun,
    AggregatorStatus,
    ParkedEvent,
    key_text,
)
from batchyard.clock import to_datetime
from batchyard.errors import Conflict, InvalidInput, NotFound
from batchyard.failures import error_text, log_failure
from batchyard.folds import Fold
from batchyard.store import Tx
from batchyard.tasks import Task, TaskKind

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

log = logging.getLogger("batchyard.aggregator")
_PAGES_PER_APPLY = 20  # the page budget of one transaction


class Aggregators:
    """Event streams and their aggregators on one yard. Reached through `Yard` methods."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        runtime.kinds.add(TaskKind(RUN_TASK, self.run_task))
        runtime.kinds.on_worker_start(self.schedule_all)
        self.configs: dict[str, AggregatorConfig] = {}

    # -- registration ---------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        stream: str,
        key: str | Callable[[dict[str, Any]], Any],
        fold: Fold,
        apply: str | Callable[..., Any] | None = None,
        page_size: int = 500,
        max_keys: int = 500,
        every: float | None = None,
        lease: float = 60.0,
    ) -> AggregatorConfig:
        if not name or not isinstance(name, str):
            raise InvalidInput("an aggregator needs a non-empty name", field="name")
        if not isinstance(fold, Fold):
            raise InvalidInput(
                "fold must be a batchyard.folds.Fold (count(), sum(...), ...)", field="fold"
            )
        for field, value in (("page_size", page_size), ("max_keys", max_keys)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{field} must be a positive integer", field=field)
        if every is not None and every <= 0:
            raise InvalidInput("every must be a positive number of seconds", field="every")
        key_of = (lambda event, field=key: event[field]) if isinstance(key, str) else key
        config = AggregatorConfig(
            name=name,
            stream=stream,
            key=key_of,
            fold=fold,
            apply=None if apply is None else self.runtime.handlers.name_of(apply, "apply"),
            page_size=page_size,
            max_keys=max_keys,
            every=every,
            lease=lease,
        )
        self.configs[name] = config
        # the row exists from registration on, so event pruning knows this reader
        with self.store.transaction(self.runtime.now()) as tx:
            self._ensure_row(tx, config)
        return config

    def config(self, name: str) -> AggregatorConfig:
        try:
            return self.configs[name]
        except KeyError:
            raise NotFound(f"no aggregator registered as {name!r}", name=name) from None

    def _ensure_row(self, tx: Tx, config: AggregatorConfig) -> None:
        tx.execute(
            "INSERT INTO batchyard_aggregators (name, stream, created_at) "
            "VALUES (:name, :stream, {now}) ON CONFLICT (name) DO NOTHING",
            {"name": config.name, "stream": config.stream},
        )

    # -- running --------------------------------------------------------------------------

    def run(
        self, name: str, *, fail_before_cursor: Callable[[], None] | None = None
    ) -> AggregatorRun:
        """Fold and apply until caught up. Skips (``skipped=True``) when another runner
        holds the aggregator's lease."""
        config = self.config(name)
        runner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        with self.store.transaction(self.runtime.now()) as tx:
            self._ensure_row(tx, config)
            taken = tx.execute(
                "UPDATE batchyard_aggregators SET lease_until = {now} + :lease, "
                "runner = :runner WHERE name = :name "
                "AND (lease_until IS NULL OR lease_until < {now})",
                {"name": name, "lease": config.lease, "runner": runner},
            ).rowcount
        if not taken:
            return AggregatorRun(name, 0, 0, 0, 0, caught_up=False, skipped=True)
        totals = {"events": 0, "keys": 0, "applies": 0, "parked": 0}
        error: str | None = None
        started = time.perf_counter()
        try:
            while True:
                events, keys, parked, caught_up = self._apply_once(
                    config, runner, fail_before_cursor
                )
                totals["events"] += events
                totals["keys"] += keys
                totals["parked"] += parked
                totals["applies"] += 1
                if caught_up:
                    return AggregatorRun(
                        name,
                        totals["events"],
                        totals["keys"],
                        totals["applies"],
                        totals["parked"],
                        caught_up=True,
                    )
        except Exception as exc:
            error = error_text(exc)
            # a scheduled aggregator runs again (WARNING); one run by hand does not (ERROR)
            log_failure(
                log,
                f"run of aggregator {name}",
                exc,
                final=config.every is None,
                aggregator=name,
                stream=config.stream,
                handler=config.apply,
                duration_seconds=round(time.perf_counter() - started, 6),
            )
            raise
        finally:
            # release the lease whatever happened, so the next run need not wait it out
            with self.store.transaction(self.runtime.now()) as tx:
                tx.execute(
                    "UPDATE batchyard_aggregators SET lease_until = NULL, runner = NULL, "
                    "last_run_at = {now}, last_error = :error "
                    "WHERE name = :name AND runner = :runner",
                    {"name": name, "runner": runner, "error": error},
                )

    def _apply_once(
        self, config: AggregatorConfig, runner: str, fail_before_cursor: Callable[[], None] | None
    ) -> tuple[int, int, int, bool]:
        """One transaction: read pages after the cursor, fold, apply, move the cursor."""
        with self.store.transaction(self.runtime.now()) as tx:
            row = tx.one(
                "SELECT cursor_position, cursor_id FROM batchyard_aggregators "
                "WHERE name = :name AND runner = :runner {for_update}",
                {"name": config.name, "runner": runner},
            )
            if row is None:
                raise Conflict(f"aggregator {config.name!r} lost its lease", name=config.name)
            start = (int(row["cursor_position"]), int(row["cursor_id"]))
            cursor = start
            deltas: dict[str, Any] = {}
            events = parked = 0
            caught_up = False
            for _ in range(_PAGES_PER_APPLY):
                page = tx.all(
                    "SELECT id, position, payload FROM batchyard_events "
                    "WHERE stream = :stream AND {after_cursor} "
                    "AND position < {safe_position} ORDER BY {stream_order} LIMIT :limit",
                    {
                        "stream": config.stream,
                        "position": cursor[0],
                        "id": cursor[1],
                        "limit": config.page_size,
                    },
                )
                full_stop = False
                for event_row in page:
                    event = orjson.loads(event_row["payload"])
                    try:
                        key = key_text(config.key(event))
                        if key not in deltas and len(deltas) >= config.max_keys:
                            full_stop = True  # this event waits for the next transaction
                            break
                        deltas[key] = config.fold.step(deltas.get(key), event)
                    except Exception as exc:  # a poison event: park it and go on
                        self._park(tx, config.name, event_row, exc)
                        parked += 1
                    events += 1
                    cursor = (int(event_row["position"]), int(event_row["id"]))
                if full_stop:
                    break
                if len(page) < config.page_size:
                    caught_up = True
                    break
            if cursor == start:
                return 0, 0, 0, True
            self._apply(tx, config, deltas)
            if fail_before_cursor is not None:
                fail_before_cursor()
            moved = tx.execute(
                "UPDATE batchyard_aggregators SET cursor_position = :new_position, "
                "cursor_id = :new_id, events_folded = events_folded + :events "
                "WHERE name = :name AND cursor_position = :old_position AND cursor_id = :old_id",
                {
                    "name": config.name,
                    "new_position": cursor[0],
                    "new_id": cursor[1],
                    "old_position": start[0],
                    "old_id": start[1],
                    "events": events,
                },
            ).rowcount
            if moved != 1:
                raise Conflict(
                    f"aggregator {config.name!r}: its cursor moved under this run", name=config.name
                )
        return events, len(deltas), parked, caught_up

    def _apply(self, tx: Tx, config: AggregatorConfig, deltas: dict[str, Any]) -> None:
        if not deltas:
            return
        if config.apply is not None:
            self.runtime.handlers.call(config.apply, deltas, tx)
            return
        # the keys travel as one JSON array: one statement, one plan, whatever their number
        rows = tx.all(
            "SELECT key, total FROM batchyard_totals WHERE aggregator = :name "
            "AND key IN {json_text_values}",
            {"name": config.name, "values": orjson.dumps(list(deltas)).decode()},
        )
        current = {r["key"]: orjson.loads(r["total"]) for r in rows}
        tx.executemany(
            "INSERT INTO batchyard_totals (aggregator, key, total, updated_at) "
            "VALUES (:name, :key, :total, {now}) ON CONFLICT (aggregator, key) "
            "DO UPDATE SET total = excluded.total, updated_at = excluded.updated_at",
            [
                {
                    "name": config.name,
                    "key": key,
                    "total": orjson.dumps(config.fold.merge(current.get(key), delta)).decode(),
                }
                for key, delta in deltas.items()
            ],
        )

    def _park(self, tx: Tx, name: str, event_row: Any, exc: Exception) -> None:
        tx.execute(
            "INSERT INTO batchyard_parked_events (aggregator, event_id, position, "
            "error, parked_at) VALUES (:name, :id, :position, :error, {now}) "
            "ON CONFLICT (aggregator, event_id) DO NOTHING",
            {
                "name": name,
                "id": event_row["id"],
                "position": event_row["position"],
                "error": f"{type(exc).__name__}: {exc}",
            },
        )

    def run_task(self, task: Task) -> None:
        """The scheduled run (``every=``): run, then schedule the next one."""
        name = task.payload["name"]
        try:
            # a failed run was logged by `run` and is kept as its last_error: the worker
            # need not log it again, nor retry it (the next run is scheduled below)
            with contextlib.suppress(Exception):
                self.run(name)
        finally:
            with self.store.transaction(self.runtime.now()) as tx:
                self.tasks.complete(tx, task)
                self.schedule(tx, self.config(name))

    def request_run(self, name: str) -> None:
        """Ask the workers to run `name` now: its scheduled run is brought forward, or a
        run is queued (a worker that registered the aggregator runs it)."""
        with self.store.transaction(self.runtime.now()) as tx:
            if (
                tx.one("SELECT name FROM batchyard_aggregators WHERE name = :name", {"name": name})
                is None
            ):
                raise NotFound(f"no aggregator {name!r}", name=name)
            self.tasks.enqueue(tx, RUN_TASK, {"name": name}, key=f"aggregator:{name}")

    def schedule_all(self) -> None:
        """When a worker starts: each registered aggregator's next run is queued."""
        with self.store.transaction(self.runtime.now()) as tx:
            for config in self.configs.values():
                self.schedule(tx, config)

    def schedule(self, tx: Tx, config: AggregatorConfig) -> None:
        if config.every is not None:
            self.tasks.enqueue(
                tx,
                RUN_TASK,
                {"name": config.name},
                delay=config.every,
                key=f"aggregator:{config.name}",
            )

    # -- reading --------------------------------------------------------------------------

    def get_totals(self, name: str, key: Any = None) -> Any:
        """One key's total (None if it has none), or ``{key: total}`` for all keys."""
        self.config(name)
        with self.store.transaction(write=False) as tx:
            if key is not None:
                row = tx.one(
                    "SELECT total FROM batchyard_totals WHERE aggregator = :name AND key = :key",
                    {"name": name, "key": key_text(key)},
                )
                return None if row is None else orjson.loads(row["total"])
            rows = tx.all(
                "SELECT key, total FROM batchyard_totals WHERE aggregator = :name", {"name": name}
            )
        return {r["key"]: orjson.loads(r["total"]) for r in rows}

    def status(self, name: str) -> AggregatorStatus:
        config = self.config(name)
        with self.store.transaction(self.runtime.now()) as tx:
            self._ensure_row(tx, config)
            row = tx.one("SELECT * FROM batchyard_aggregators WHERE name = :name", {"name": name})
            behind = tx.one(
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest, {now} AS now "
                "FROM batchyard_events WHERE stream = :stream AND {after_cursor}",
                {
                    "stream": config.stream,
                    "position": row["cursor_position"],
                    "id": row["cursor_id"],
                },
            )
            parked = tx.one(
                "SELECT COUNT(*) AS n FROM batchyard_parked_events WHERE aggregator = :name",
                {"name": name},
            )["n"]
        oldest = behind["oldest"]
        return AggregatorStatus(
            name=name,
            stream=config.stream,
            cursor=(int(row["cursor_position"]), int(row["cursor_id"])),
            lag_events=int(behind["n"]),
            lag_seconds=0.0 if oldest is None else max(0.0, behind["now"] - oldest),
            events_folded=int(row["events_folded"]),
            last_run_at=to_datetime(row["last_run_at"]),
            last_error=row["last_error"],
            parked=int(parked),
            running=row["lease_until"] is not None and row["lease_until"] >= behind["now"],
        )

    def parked_events(self, name: str, limit: int = 100) -> list[ParkedEvent]:
        with self.store.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT p.event_id, p.position, p.error, p.parked_at, e.payload "
                "FROM batchyard_parked_events p JOIN batchyard_events e "
                "ON e.id = p.event_id WHERE p.aggregator = :name "
                "ORDER BY p.position, p.event_id LIMIT :limit",
                {"name": name, "limit": limit},
            )
        return [
            ParkedEvent(
                event_id=int(r["event_id"]),
                position=int(r["position"]),
                error=r["error"],
                event=orjson.loads(r["payload"]),
                parked_at=to_datetime(r["parked_at"]),
            )
            for r in rows
        ]

    def retry_parked(self, name: str) -> int:
        """Fold parked events again (after fixing the fold); return how many went in.
        Those that fail again stay parked with their new error."""
        config = self.config(name)
        done = 0
        with self.store.transaction(self.runtime.now()) as tx:
            rows = tx.all(
                "SELECT p.event_id, p.position, e.payload "
                "FROM batchyard_parked_events p JOIN batchyard_events e "
                "ON e.id = p.event_id WHERE p.aggregator = :name "
                "ORDER BY p.position, p.event_id",
                {"name": name},
            )
            deltas: dict[str, Any] = {}
            for row in rows:
                event = orjson.loads(row["payload"])
                try:
                    key = key_text(config.key(event))
                    deltas[key] = config.fold.step(deltas.get(key), event)
                except Exception as exc:
                    tx.execute(
                        "UPDATE batchyard_parked_events SET error = :error "
                        "WHERE aggregator = :name AND event_id = :id",
                        {
                            "name": name,
                            "id": row["event_id"],
                            "error": f"{type(exc).__name__}: {exc}",
                        },
                    )
                    continue
                tx.execute(
                    "DELETE FROM batchyard_parked_events "
                    "WHERE aggregator = :name AND event_id = :id",
                    {"name": name, "id": row["event_id"]},
                )
                done += 1
            self._apply(tx, config, deltas)
        return done

    def reset(self, name: str, to: int | None = None) -> None:
        """Replay the stream from its start, rebuilding the totals batchyard manages; or,
        for an aggregator with its own `apply`, from the event with id `to` on."""
        config = self.config(name)
        if to is not None and config.apply is None:
            raise InvalidInput(
                "batchyard-managed totals can only be rebuilt from the start "
                "(to=None): a partial replay would count events twice",
                field="to",
            )
        with self.store.transaction(self.runtime.now()) as tx:
            self._ensure_row(tx, config)
            start = (-1, 0)
            if to is not None:
                event = tx.one(
                    "SELECT position, id FROM batchyard_events WHERE id = :id AND stream = :stream",
                    {"id": to, "stream": config.stream},
                )
                if event is None:
                    raise NotFound(f"no event {to} in stream {config.stream!r}", field="to")
                before = tx.one(
                    "SELECT position, id FROM batchyard_events "
                    "WHERE stream = :stream AND (position, id) < (:position, :id) "
                    "ORDER BY position DESC, id DESC LIMIT 1",
                    {"stream": config.stream, "position": event["position"], "id": event["id"]},
                )
                if before is not None:
                    start = (int(before["position"]), int(before["id"]))
            held = tx.execute(
                "UPDATE batchyard_aggregators SET cursor_position = :position, "
                "cursor_id = :id, last_error = NULL "
                "WHERE name = :name AND (lease_until IS NULL "
                "OR lease_until < {now})",
                {"name": name, "position": start[0], "id": start[1]},
            ).rowcount
            if not held:
                raise Conflict(
                    f"aggregator {name!r} is running; reset it when it is idle", name=name
                )
            if to is None:
                tx.execute(
                    "UPDATE batchyard_aggregators SET events_folded = 0 WHERE name = :name",
                    {"name": name},
                )
                for table in ("batchyard_totals", "batchyard_parked_events"):
                    tx.execute(f"DELETE FROM {table} WHERE aggregator = :name", {"name": name})
