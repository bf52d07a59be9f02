"""The bulk-job commands of `batchyard`: import, export, jobs, stats.

`import` reads NDJSON, CSV or a JSON array, submits one job, and shows its progress while an
in-process worker (and any other worker on the store) runs it. A line that cannot be read
stops the command before anything is submitted, naming the line.

`import`, `export` and `stats` are top-level commands and `jobs` a group: the package's
`__init__` registers them on the `batchyard` command.
"""

from __future__ import annotations

import csv
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from batchyard.bulk.records import BulkJobStatus
from batchyard.cli._common import AppOption, StoreOption, load_yard
from batchyard.cli._output import Column, Id, JsonOption, console, say, show_list, show_one
from batchyard.cli._units import rate
from batchyard.errors import InvalidInput
from batchyard.yard import Yard

jobs_app = typer.Typer(help="Inspect and steer bulk jobs.", no_args_is_help=True)


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else rate(task.speed))


JOB_COLUMNS = [
    Id("id"),
    Column("type"),
    Column("status"),
    Column("total"),
    Column("processed"),
    Column("failed"),
    Column("created_at", "created"),
    Column("completed_at", "completed"),
]
ERROR_COLUMNS = [Column("index"), Column("error")]
FIRST_ERRORS = 10  # shown after an import and by `jobs show`; `jobs errors` lists them all


def read_items(path: Path, format: str) -> list[Any]:
    """Items of an NDJSON, CSV or JSON file. CSV columns `data.<key>` (and any column that
    is not a thing's field) go into `data`."""
    if format == "auto":
        format = {".csv": "csv", ".json": "json"}.get(path.suffix.lower(), "ndjson")
    if format == "json":
        try:
            items = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: not valid JSON ({exc})", field="file") from None
        if not isinstance(items, list):
            raise InvalidInput(f"{path}: a JSON file must hold an array of items", field="file")
        return items
    if format == "csv":
        return _csv_items(path)
    items = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput(
                        f"{path}, line {number}: not valid JSON ({exc})", line=number
                    ) from None
    return items


_THING_COLUMNS = {"ns", "id", "type", "content", "visibility", "fromNs", "fromId", "toNs", "toId"}


def _csv_items(path: Path) -> list[Any]:
    items = []
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        for row in reader:
            if None in row:
                raise InvalidInput(
                    f"{path}, line {reader.line_num}: more fields than the header",
                    line=reader.line_num,
                )
            item: dict[str, Any] = {"data": {}}
            for column, value in row.items():
                if column in _THING_COLUMNS:
                    if value != "":
                        item[column] = value
                else:
                    item["data"][column.removeprefix("data.")] = value
            items.append(item)
    return items


def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    ns: Annotated[str, typer.Option(help="namespace for items that name none")],
    relationships: Annotated[bool, typer.Option(help="import relationships")] = False,
    format: Annotated[str, typer.Option(help="auto (by suffix), ndjson, csv or json")] = "auto",
    wait: Annotated[bool, typer.Option(help="show progress until the job ends")] = True,
    worker: Annotated[bool, typer.Option(help="run an in-process worker meanwhile")] = True,
    app_path: AppOption = None,
    store: StoreOption = None,
) -> None:
    """Import things (or relationships) from a file as one bulk job."""
    if format not in ("auto", "ndjson", "csv", "json"):
        raise InvalidInput(f"--format must be auto, ndjson, csv or json, not {format!r}")
    items = [
        {"ns": ns, **item} if isinstance(item, dict) else item for item in read_items(file, format)
    ]
    yard = load_yard(app_path, store, create=True)
    job_id = yard.create_batch_job(
        "import-relationships" if relationships else "import-things", items
    )
    say(f"job {job_id}: {len(items)} item(s)")
    if wait:
        _follow(yard, job_id, worker)


def _follow(yard: Yard, job_id: str, worker: bool) -> None:
    runner = yard.worker(concurrency=2) if worker else None
    if runner is not None:
        threading.Thread(target=runner.run, name="batchyard-worker", daemon=True).start()
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            RateColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            job = yard.get_batch_job(job_id)
            bar = progress.add_task("importing", total=job.total)
            while job.completed_at is None:
                time.sleep(0.2)
                job = yard.get_batch_job(job_id)
                progress.update(bar, completed=job.processed + job.failed)
            progress.update(bar, completed=job.processed + job.failed)
    finally:
        if runner is not None:
            runner.stop()
    say(f"job {job_id}: {job.status} - {job.processed} processed, {job.failed} failed")
    for error in yard.get_batch_job_errors(job_id, limit=FIRST_ERRORS):
        say(f"  item {error.index}: {error.error}")
    if job.failed > FIRST_ERRORS:
        say(f"  ... `batchyard jobs errors {job_id}` lists all {job.failed}")
    if job.status != "completed":
        raise typer.Exit(1)


def export_ns(
    ns: str,
    format: Annotated[str, typer.Option(help="json, csv or ndjson")] = "json",
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write")] = Path("-"),
    app_path: AppOption = None,
    store: StoreOption = None,
) -> None:
    """Export a namespace's things to a file (or standard output with -o -)."""
    yard = load_yard(app_path, store)
    total = yard.count_things(ns)
    if str(output) == "-":
        for chunk in yard.export_to_format(ns, format):
            sys.stdout.buffer.write(chunk)
        return
    with Progress(
        TextColumn("[bold]exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("export", total=total)
        tmp = output.with_name(output.name + ".part")
        with tmp.open("wb") as out:  # a complete file appears, or none
            for chunk in yard.export_to_format(
                ns, format, on_rows=lambda n: progress.advance(bar, n)
            ):
                out.write(chunk)
        tmp.replace(output)
    say(f"{total} thing(s) of {ns!r} written to {output}")


@jobs_app.command("list")
def jobs_list(
    app_path: AppOption = None,
    store: StoreOption = None,
    status: Annotated[BulkJobStatus | None, typer.Option(help="only this status")] = None,
    type: Annotated[str | None, typer.Option(help="only this type")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Bulk jobs, newest first."""
    jobs = load_yard(app_path, store).list_batch_jobs(status=status, type=type, limit=limit)
    show_list(jobs, as_json, JOB_COLUMNS)


@jobs_app.command("show")
def jobs_show(
    job_id: str, app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """One job, with its first errors (`--json`: its first 100 errors and results)."""
    job = load_yard(app_path, store).get_batch_job(job_id)
    if as_json:
        show_one(job, as_json)
        return
    show_one(job, as_json, omit=("errors", "results"))
    if job.errors:
        show_list(job.errors[:FIRST_ERRORS], as_json, ERROR_COLUMNS)
    if job.failed > FIRST_ERRORS:
        say(f"... `batchyard jobs errors {job_id}` lists all {job.failed}")


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str, app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Start no more of a job's chunks."""
    job = load_yard(app_path, store).cancel_batch_job(job_id)
    if as_json:
        show_one(job, as_json)
    else:
        say(f"{job_id}: {job.status}")


@jobs_app.command("retry")
def jobs_retry(
    job_id: str, app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """A new job of an ended job's failed items (once per job: again, the same job)."""
    yard = load_yard(app_path, store)
    retry_id = yard.retry_failed_items(job_id)
    job = yard.get_batch_job(retry_id)
    if as_json:
        show_one(job, as_json)
    else:
        say(f"{retry_id}: {job.total} failed item(s) of {job_id}, {job.status}")


@jobs_app.command("errors")
def jobs_errors(
    job_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every per-item error of a job, by index."""
    yard = load_yard(app_path, store)
    after, rows = -1, []
    while page := yard.get_batch_job_errors(job_id, after=after, limit=1000):
        rows += page
        after = page[-1].index
    show_list(rows, as_json, ERROR_COLUMNS)


def stats(
    app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Bulk jobs by status and the success rate."""
    show_one(load_yard(app_path, store).get_stats(), as_json)
