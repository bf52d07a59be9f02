"""Reading the code examples out of README.md and docs/*.md.

A fenced block is a line ```` ```lang ```` through the next line of three backticks. A
``python`` block is run as a program; an HTML comment on the line before it (blank lines
between allowed) says otherwise: ``<!-- not-run: why -->``. A ``text`` block preceded by
``<!-- output -->`` is what the python block before it prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_COMMENT = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    note: str | None  # the HTML comment right before it, if any
    output: str | None = None  # for python: the <!-- output --> block after it

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def not_run(self) -> str | None:
        """The reason a python block is not run, or None."""
        if self.note is not None and self.note.startswith("not-run:"):
            return self.note.removeprefix("not-run:").strip()
        return None


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    note: str | None = None
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            comment = _COMMENT.match(lines[i])
            if comment is not None:
                note = comment.group(1)
            elif lines[i].strip():
                note = None
            i += 1
            continue
        indent, lang = fence.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end]) + "\n"
        block = Block(page, i + 1, lang, body, note)
        if lang == "text" and note == "output" and found and found[-1].lang == "python":
            found[-1].output = body
        else:
            found.append(block)
        note = None
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]
