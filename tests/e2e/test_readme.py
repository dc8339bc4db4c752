"""The README's walkthrough, run as written, top to bottom, against a fresh `kiln up` on the
embedded default: every ```bash and ```python block, in order, in one shell.

- A block right after a `<!-- readme-test: skip … -->` line is not run (it needs PostgreSQL,
  a cluster, another machine, or is a benchmark); the comment says why.
- Every command must succeed. curl runs with `--fail-with-body` (from a curlrc), so an
  error answer fails the walkthrough unless the README says it is one: a line whose
  comment shows the status (`# → 409 …`) must fail, and does.
- The only change to the text: `localhost:8000` and `localhost:8001` become the ports this
  test's `kiln up` listens on, and the CLI is pointed there by KILN_API_URL.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, http

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b")
FENCE = re.compile(r"^```(\w+)\s*$")
# `# → 409 ...`: the README says this command is refused.
REFUSED = re.compile(r"#\s*→\s*[45]\d\d\b")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str


def blocks(readme: str) -> list[Block]:
    """The README's bash and python blocks that the walkthrough runs, in order."""
    found: list[Block] = []
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        if fence.group(1) in ("bash", "python") and not SKIP.search(before):
            found.append(Block(i + 1, fence.group(1), "\n".join(lines[i + 1 : end])))
        i = end + 1
    return found


def script(found: list[Block], workdir: Path) -> str:
    """One bash script of the blocks: python blocks run with the venv's python; a line the
    README marks as refused must fail."""
    out = ["set -euo pipefail"]
    for n, block in enumerate(found):
        out.append(f"echo '=== README.md:{block.line}'")
        if block.lang == "python":
            path = workdir / f"block{n}.py"
            path.write_text(block.text + "\n")
            out.append(f".venv/bin/python {path}")
            continue
        for line in block.text.splitlines():
            if REFUSED.search(line) and not line.rstrip().endswith("\\"):
                command = line.split("#", 1)[0].strip()
                out.append(
                    f"if {command}; then echo 'README.md:{block.line}: expected a refusal:"
                    f" {command}' >&2; exit 1; fi"
                )
            else:
                out.append(line)
    return "\n".join(out) + "\n"


def test_blocks_are_found_and_refusals_inverted(tmp_path: Path) -> None:
    readme = "\n".join(
        [
            "```bash",
            "echo one",
            "```",
            "<!-- readme-test: skip (needs a cluster) -->",
            "```bash",
            "kubectl apply -k .",
            "```",
            "```json",
            '{"a": 1}',
            "```",
            "```python",
            "print(2)",
            "```",
            "```bash",
            "curl -s localhost:8000/x   # → 409: refused",
            "```",
        ]
    )
    found = blocks(readme)
    assert [(b.line, b.lang) for b in found] == [(1, "bash"), (11, "python"), (14, "bash")]
    text = script(found, tmp_path)
    assert "kubectl" not in text
    assert "if curl -s localhost:8000/x; then" in text
    assert "print(2)" in (tmp_path / "block1.py").read_text()


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_the_readme_walkthrough_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    api_port, predict_port = stack.api.rsplit(":", 1)[1], stack.predict.rsplit(":", 1)[1]
    readme = re.sub(r"(localhost|127\.0\.0\.1):8000\b", f"localhost:{api_port}", readme)
    readme = re.sub(r"(localhost|127\.0\.0\.1):8001\b", f"localhost:{predict_port}", readme)
    found = blocks(readme)
    # A fresh directory, as a newcomer's checkout: the venv and the examples, nothing else.
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "examples").symlink_to(ROOT / "examples")
    (tmp_path / ".curlrc").write_text("--fail-with-body\n--max-time 60\n")
    env = {k: v for k, v in stack.env.items() if not k.startswith("KILN_API_KEY")}
    env.update(
        CURL_HOME=str(tmp_path),
        KILN_API_URL=stack.api,
        KILN_PREDICT_URL=stack.predict,
        PATH=os.environ["PATH"],
        NO_COLOR="1",
    )
    run = subprocess.run(
        ["bash", "-c", script(found, tmp_path)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = run.stdout + run.stderr
    (tmp_path / "walkthrough.log").write_text(output)
    assert run.returncode == 0, f"{output[-8000:]}\n--- kiln up:\n{stack.log_tail()}"
    assert output.count("=== README.md:") == len(found)

    # What a newcomer would look at once the walkthrough is done.
    models = {m["name"] for m in http.get(f"{stack.api}/models").json()["items"]}
    assert {"cancer", "iris", "digits-cnn"} <= models, models
    cancer = http.get(f"{stack.api}/models/cancer/versions").json()
    assert [v["version"] for v in cancer] == [1, 2], cancer  # 3 was deleted
    iris = http.get(f"{stack.predict}/v2/models/iris@production").json()
    assert iris["name"] == "iris@production" or iris["name"].startswith("iris"), iris
    assert '"outputs"' in output  # the OIP infer answers were printed
