"""Reading our HTML pages in tests."""

from __future__ import annotations

import re


def page_assets(html: str) -> list[str]:
    """The scripts and stylesheets a page loads."""
    return re.findall(r'<(?:script|link rel="stylesheet")[^>]* (?:src|href)="([^"]+)"', html)
