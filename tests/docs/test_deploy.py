"""The container files of deploy/ (shown in the docs; no image registry is reachable here, so
they are not built): the compose file parses, every batchyard command it and the Dockerfile
run is a real one that takes the options given, and every BATCHYARD_* variable they set is
one batchyard reads. And the docs' table of variables is the CLI's."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from batchyard.cli import app
from tests.docs.examples import ROOT

DEPLOY = ROOT / "deploy"
VARIABLE = re.compile(r"\bBATCHYARD_[A-Z_]+\b")


def _read_by_the_code() -> set[str]:
    """The BATCHYARD_* names batchyard's source spells out (as envvar= or read directly)."""
    return {
        name
        for path in (ROOT / "src" / "batchyard").rglob("*.py")
        for name in re.findall(r"[\"'](BATCHYARD_[A-Z_]+)[\"']", path.read_text())
    }


def _dockerfile() -> tuple[list[str], dict[str, str]]:
    """The Dockerfile's ENTRYPOINT + CMD (exec form), and the variables its ENV sets."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    argv: dict[str, list[str]] = {}
    env: dict[str, str] = {}
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction in ("ENTRYPOINT", "CMD"):
            argv[instruction] = yaml.safe_load(rest)  # the exec form is a JSON array
        elif instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(rest))
    return argv["ENTRYPOINT"] + argv.get("CMD", []), env


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _batchyard_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `batchyard`) of every batchyard command the files run."""
    entrypoint, _ = _dockerfile()
    found = [("Dockerfile", entrypoint)]
    for name, service in _compose()["services"].items():
        if "build" in service:  # our image: its command follows the ENTRYPOINT
            found.append((name, entrypoint[:1] + list(service.get("command", entrypoint[1:]))))
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD"]:
            found.append((f"{name} healthcheck", test[1:]))
    return [(where, argv[1:]) for where, argv in found if argv[0] == "batchyard"]


def test_the_compose_file_runs_the_service_on_postgresql_with_two_workers():
    services = _compose()["services"]
    assert services["db"]["image"].startswith("postgres:")
    assert services["api"]["command"] == ["serve"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    for name in ("api", "worker", "migrate"):
        assert services[name]["environment"]["BATCHYARD_STORE"].startswith("postgresql://")
    assert len(_batchyard_commands()) >= 5


@pytest.mark.parametrize(("where", "argv"), _batchyard_commands(), ids=lambda v: str(v))
def test_every_command_is_a_batchyard_command(where, argv):
    result = subprocess.run(
        [sys.executable, "-m", "batchyard", *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{where}: batchyard {shlex.join(argv)}\n{result.stderr}"


def test_every_variable_set_is_one_batchyard_reads():
    _, dockerfile_env = _dockerfile()
    set_there = {name for name in dockerfile_env if name.startswith("BATCHYARD_")}
    for service in _compose()["services"].values():
        set_there |= {n for n in service.get("environment", {}) if n.startswith("BATCHYARD_")}
    assert set_there, "the files set no variable"
    assert set_there - _read_by_the_code() == set()


def _cli_variables() -> dict[str, set[str]]:
    """Each BATCHYARD_* variable of the CLI's options, with the commands that read it."""
    found: dict[str, set[str]] = {}

    def walk(command: Any, path: str) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                found.setdefault(envvar, set()).add(path.strip())
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "")
    return found


def test_the_docs_table_of_variables_is_the_clis():
    page = (ROOT / "docs" / "cli.md").read_text()
    table = page[page.index("## Configuration by environment") :]
    table = table[: table.index("\n\n", table.index("| variable"))]
    documented = set(VARIABLE.findall(table))
    assert documented == set(_cli_variables()) | {"BATCHYARD_API_TOKEN"}


def test_serve_and_worker_take_every_option_from_the_environment_but_once():
    variables = _cli_variables()
    command = typer.main.get_command(app)
    for name in ("serve", "worker"):
        options = {p.name for p in command.commands[name].params}  # type: ignore[attr-defined]
        with_variable = {
            p.name
            for p in command.commands[name].params  # type: ignore[attr-defined]
            if getattr(p, "envvar", None)
        }
        assert options - with_variable <= {"once"}, name
    assert variables["BATCHYARD_CONCURRENCY"] >= {"serve", "worker"}


def test_the_docs_show_the_files():
    page = (ROOT / "docs" / "operations.md").read_text()
    assert '--8<-- "deploy/Dockerfile"' in page and '--8<-- "deploy/compose.yaml"' in page
    assert Path(DEPLOY / "Dockerfile").exists()
