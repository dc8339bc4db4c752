"""The files of the `/docs` (Swagger UI) and `/redoc` (ReDoc) pages, shipped in the package
so that both pages work on a machine without internet (services/docs.py serves them).

They are upstream's release files, byte for byte, from the npm registry (README.md here
says how to update them): Swagger UI from `swagger-ui-dist` (Apache-2.0, LICENSE.swagger-ui
and NOTICE.swagger-ui), ReDoc from `redoc` (MIT, LICENSE.redoc); the `*.LICENSE.txt` files
beside the bundles are the notices of the libraries each bundle contains. No source maps.
tests/unit/services/test_docs_offline.py checks the folder against `FILES`.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"

SWAGGER_UI_VERSION = "5.35.0"  # npm swagger-ui-dist; FastAPI's default is swagger-ui-dist@5
REDOC_VERSION = "2.5.4"  # npm redoc, bundles/; FastAPI's default is redoc@2

SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
FAVICON = "favicon-32x32.png"
REDOC_JS = "redoc.standalone.js"

# Every file in static/, with its sha256: the same as in the npm tarballs of the versions
# above.
FILES = {
    SWAGGER_JS: "e6a898692f2d768e807c3ba4626068a69a2c5dd960dd6c76f3e4d3a3de180af2",
    "swagger-ui-bundle.js.LICENSE.txt": (
        "37eb6e7e59aed57b2c1acf076574b818ea07b74265717e0bd67b59e0baf9abbb"
    ),
    SWAGGER_CSS: "5ed08757e53da3e026d6cbecc61fe5d43585c9560b302d534ad56692519a273d",
    FAVICON: "3ed612f41e050ca5e7000cad6f1cbe7e7da39f65fca99c02e99e6591056e5837",
    REDOC_JS: "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b",
    "redoc.standalone.js.LICENSE.txt": (
        "eed602ec32e00b2b9df1984fbcc26a687b1b3193ec01961389c4b8439e6edf73"
    ),
}
