"""Every code example of the README and the docs runs.

Each ``python`` block is a whole program: it runs in a subprocess, in an empty directory of
its own (so ``sqlite:///events.db`` is a fresh store), and must exit 0 - and print exactly
its ``<!-- output -->`` block when it has one. A block that cannot run on its own (it stands
for the reader's code, or runs until stopped) says why in ``<!-- not-run: why -->``.
Command lines in ``bash`` blocks are checked against the CLI with ``--help``: the command
exists and takes every option shown.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.docs.examples import ROOT, Block, all_blocks

BLOCKS = all_blocks()
LANGUAGES = {"python", "bash", "text", "yaml", "ini", "mermaid", "json", "dockerfile"}
RUN = [b for b in BLOCKS if b.lang == "python" and b.not_run is None]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def test_the_docs_have_examples() -> None:
    assert len(RUN) >= 20, [b.id for b in RUN]


def test_every_block_names_a_known_language() -> None:
    # a python example fenced as `py` or left bare would escape the test below
    unknown = [(b.id, b.lang) for b in BLOCKS if b.lang not in LANGUAGES]
    assert unknown == []


def test_blocks_not_run_say_why() -> None:
    marked = [b for b in BLOCKS if b.note is not None and b.note.startswith("not-run")]
    assert [b.id for b in marked if b.lang != "python" or not b.not_run] == []


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_python_example_runs(block: Block, tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(block.text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout}\n{result.stderr}"
    if block.output is not None:
        assert result.stdout == block.output


def _yaml_commands(node: object) -> list[list[str]]:
    """Every `command:` list of a Kubernetes manifest."""
    if isinstance(node, dict):
        found = [node["command"]] if isinstance(node.get("command"), list) else []
        return found + [c for value in node.values() for c in _yaml_commands(value)]
    if isinstance(node, list):
        return [c for value in node for c in _yaml_commands(value)]
    return []


def _command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv after `batchyard`) of every batchyard command in a bash block, a
    systemd unit's ExecStart or a Kubernetes manifest's command."""
    commands: list[tuple[str, list[str]]] = []
    for block in BLOCKS:
        if block.lang == "bash":
            for logical in block.text.replace("\\\n", " ").splitlines():
                for command in logical.split("&&"):
                    line = command.split(" #")[0].split("|")[0]
                    commands.append((block.id, shlex.split(line)))
        elif block.lang == "ini":
            commands += [
                (block.id, shlex.split(line.removeprefix("ExecStart=")))
                for line in block.text.splitlines()
                if line.startswith("ExecStart=")
            ]
        elif block.lang == "yaml":
            commands += [(block.id, argv) for argv in _yaml_commands(yaml.safe_load(block.text))]
    return [
        (where, argv[1:]) for where, argv in commands if argv and Path(argv[0]).name == "batchyard"
    ]


def test_structured_blocks_parse() -> None:
    for block in BLOCKS:
        if block.lang == "json":
            json.loads(block.text)
        elif block.lang == "yaml":
            assert yaml.safe_load(block.text), block.id


COMMANDS = _command_lines()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 20, COMMANDS


@pytest.mark.parametrize(
    ("where", "argv"), COMMANDS, ids=[f"{w} {' '.join(a)}" for w, a in COMMANDS]
)
def test_cli_example_is_accepted(where: str, argv: list[str]) -> None:
    # --help is eager: it answers once the command and its options are parsed, so an
    # unknown command or option fails here (exit 2) and nothing is run
    result = subprocess.run(
        [sys.executable, "-m", "batchyard", *argv, "--help"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{where}: batchyard {shlex.join(argv)}\n{result.stderr}"
    assert "Usage:" in result.stdout


def _help(argv: list[str]) -> str:
    env = {**_env(), "COLUMNS": "250", "TERM": "dumb"}
    result = subprocess.run(
        [sys.executable, "-m", "batchyard", *argv, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"batchyard {shlex.join(argv)} --help:\n{result.stderr}"
    return result.stdout


def _synopsis() -> list[tuple[list[list[str]], list[str]]]:
    """(the commands, the options) of each entry of the CLI page's synopsis."""
    (block,) = [b for b in BLOCKS if b.note == "synopsis"]
    entries: list[str] = []
    for line in block.text.splitlines():
        if line.startswith("batchyard "):
            entries.append(line)
        elif line.strip():
            entries[-1] += " " + line
    found = []
    for entry in entries:
        words = entry.split()[1:]
        command = words[0]
        rest = " ".join(words[1:])
        options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-o)\b", entry)
        first = rest.split()[0] if rest.split() else ""
        if first and re.fullmatch(r"[a-z]+", first):  # a group: its commands, by `|`
            commands = [
                [command, alt.split()[0]]
                for alt in rest.split("|")
                if alt.split() and re.fullmatch(r"[a-z]+", alt.split()[0])
            ]
        else:
            commands = [[command]]
        found.append((commands, options))
    return found


SYNOPSIS = _synopsis()


@pytest.mark.parametrize(
    ("commands", "options"), SYNOPSIS, ids=[" ".join(c[0]) for c, _ in SYNOPSIS]
)
def test_cli_synopsis_matches_the_cli(commands: list[list[str]], options: list[str]) -> None:
    helps = "\n".join(_help(argv) for argv in commands)
    assert [o for o in options if not re.search(re.escape(o) + r"(?![\w-])", helps)] == []


def _one_line(command: str) -> str:
    return " ".join(command.replace("\\\n", " ").split())


def test_ci_runs_the_readme_test_command_with_the_checks() -> None:
    readme = [
        b
        for b in BLOCKS
        if b.page.name == "README.md" and b.lang == "bash" and "-m pytest" in b.text
    ]
    assert len(readme) == 1
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_command = _one_line(ci[ci.index("python3 -m venv") :])
    checks = " && bash scripts/check"  # lint, types, layers, the docs site
    assert checks in ci_command
    assert ci_command.replace(checks, "") == _one_line(readme[0].text)
