"""Open an HTML page in headless Chromium (a Debian package) and report what it loaded.

The report pages record on ``<body>`` how many images decoded and how many script errors
happened (``data-images-loaded``, ``data-images-total``, ``data-errors``); this reads them back
from the DOM after the page has loaded, and takes a screenshot.
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
    """``{"loaded", "total", "errors"}`` of ``page`` in headless Chromium; writes ``screenshot`` (PNG)."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom)
    attrs = dict(re.findall(r'data-(images-loaded|images-total|errors)="(\d+)"', body.group(0) if body else ""))
    subprocess.run([*args, f"--screenshot={screenshot}", "--window-size=1200,2400", page.as_uri()],
                   capture_output=True, timeout=120)
    return {"loaded": int(attrs.get("images-loaded", -1)), "total": int(attrs.get("images-total", -1)),
            "errors": int(attrs.get("errors", -1))}
