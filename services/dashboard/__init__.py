"""The dashboard's files: one page, its script and its style sheet, written for Kiln and
served by the API at `/ui/` (services/api/dashboard.py). No build step and no library:
the charts are SVG drawn by `static/app.js`, and every URL in the files is relative, so
the page works offline and under any root path (docs/decisions/0024)."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
INDEX = "index.html"
# Every file the page loads; tests/unit/services/test_dashboard_assets.py checks each for
# URLs to other origins and that the wheel carries them.
FILES = ("index.html", "app.js", "charts.js", "style.css")
