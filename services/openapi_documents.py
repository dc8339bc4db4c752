"""Write both services' OpenAPI documents to docs/openapi: `python -m services.openapi_documents`
(`--check` writes nothing and exits 1 when a committed file differs).

Apart from services/openapi.py, which both apps import: this module imports both apps.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DOCUMENTS = Path("docs/openapi")
REGENERATE = "python -m services.openapi_documents"


def render(document: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def documents() -> dict[str, dict[str, Any]]:
    """Both services' documents as their apps build them, without starting either (no
    database, no models): the document depends on the code, not on the settings."""
    from services.api.app import create_app as create_api
    from services.predict.app import create_app as create_predictor
    from services.settings import ApiSettings, PredictSettings

    api = create_api(ApiSettings(kiln_auth="off", database_url="sqlite://"))
    # Neither lifespan runs: the predictor's registry source and keys are made in it.
    predictor = create_predictor(PredictSettings(kiln_auth="off"))
    return {"api.json": api.openapi(), "predict.json": predictor.openapi()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="Write both services' OpenAPI documents."
    )
    parser.add_argument("--out", type=Path, default=DOCUMENTS, help="default: %(default)s")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, document in documents().items():
        path: Path = args.out / name
        text = render(document)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        sys.stderr.write(f"{'differs' if args.check else 'wrote'}: {path}\n")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
