"""Open an HTML page in headless Chromium (a Debian package) and report what it loaded.

The report pages record on ``<body>`` how many images decoded and how many script errors
happened (``data-images-loaded``, ``data-images-total``, ``data-errors``) and how wide the page is
against the window (``data-page-width``, ``data-view-width``); this reads them back from the DOM
after the page has loaded in a 1000-pixel-wide window, and takes a screenshot.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional


def chromium() -> Optional[str]:
    """Path of a Chromium/Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def open_page(page: Path, screenshot: Path) -> dict:
    """``{"loaded", "total", "errors", "wider"}`` of ``page`` in headless Chromium (``wider``: pixels by which
    the page is wider than its 1000-pixel window, 0 when it fits); writes ``screenshot`` (PNG)."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
            "--hide-scrollbars", "--window-size=1000,2400"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom)
    attrs = dict(re.findall(r'data-(images-loaded|images-total|errors|page-width|view-width)="(\d+)"',
                            body.group(0) if body else ""))
    subprocess.run([*args, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, timeout=120)
    # (the page's scroll width is never below the window's client width; -1: the page did not say)
    wider = int(attrs["page-width"]) - int(attrs["view-width"]) if "page-width" in attrs and "view-width" in attrs \
        else -1
    return {"loaded": int(attrs.get("images-loaded", -1)), "total": int(attrs.get("images-total", -1)),
            "errors": int(attrs.get("errors", -1)), "wider": wider}
