"""Python clients generated from the committed OpenAPI documents by openapi-python-client
(the `dev` extra installs it), as a user of Kiln would make them. No network: the
generator's post-hooks (ruff) are turned off."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ROOT / "docs" / "openapi"
# No post-hooks: the generator would run ruff from PATH on its output.
CONFIG = "post_hooks: []\n"


def generate(document: Path, out: Path, package: str) -> str:
    """Generate ``package`` under ``out`` from ``document``; the generator's output."""
    config = out / "openapi-python-client.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG)
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(out / package),
            "--config",
            str(config),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def load(out: Path, package: str) -> ModuleType:
    """Import a generated package from ``out``."""
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module(package)
