"""Browser tests: a screenshot of the page whenever one fails."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    page = getattr(item, "funcargs", {}).get("page")
    if page is None or report.when != "call" or not report.failed:
        return
    path = Path(tempfile.mkdtemp(prefix="batchyard-screenshots-")) / f"{item.name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as exc:  # a dead browser must not hide the test's own failure
        report.sections.append(("screenshot", f"could not take one: {exc}"))
        return
    report.sections.append(("screenshot", f"saved to {path}"))
    print(f"\nscreenshot of the failed page: {path}", file=sys.stderr)
