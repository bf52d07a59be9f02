"""What the dashboard tests read from a page to post its forms."""

from __future__ import annotations

import re


def csrf(page_html: str) -> str:
    """The CSRF token a dashboard page carries in its `csrf-token` meta tag."""
    return re.search(r'<meta name="csrf-token" content="([0-9a-f]{64})">', page_html)[1]
