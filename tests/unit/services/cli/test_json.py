"""`--json` on the read commands: the API's answer as received, alone on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.services.cli.conftest import Kiln


def _reads(name: str) -> list[tuple[list[str], str, dict[str, Any]]]:
    """(the command, the request it answers, its query) for every read command."""
    return [
        (["models", "list", "--limit", "1000"], "/models", {"limit": 1000, "offset": 0}),
        (["models", "show", name, "2"], f"/models/{name}/versions/2", {}),
        (
            ["models", "versions", name, "--order-by", "f1", "--desc"],
            f"/models/{name}/versions",
            {"order_by": "f1", "desc": True},
        ),
        (["models", "compare", name, "1", "2"], f"/models/{name}/compare", {"versions": "1,2"}),
        (["models", "lineage", name, "1"], f"/models/{name}/versions/1/lineage", {}),
        (["models", "alias", "list", name], f"/models/{name}/aliases", {}),
        (["models", "alias", "history", name], f"/models/{name}/aliases/history", {"limit": 100}),
        (["datasets", "list"], "/datasets", {"limit": 100, "offset": 0}),
        (["datasets", "list", "--builtin"], "/datasets/builtin", {}),
        (["keys", "list"], "/keys", {}),
    ]


def test_every_read_command_prints_the_api_answer(
    kiln: Kiln, name: str, client: TestClient
) -> None:
    assert kiln("models", "alias", "set", name, "staging", "1").exit_code == 0
    for args, path, params in _reads(name):
        out = kiln(*args, "--json")
        assert out.exit_code == 0, (args, out.output)
        assert out.stderr == "", args
        assert json.loads(out.stdout) == client.get(path, params=params).json(), args
        assert out.stdout.count("\n") == 1, args  # one line, no table, no colour codes
        assert "\x1b" not in out.stdout


def test_show_takes_an_alias_and_latest(kiln: Kiln, name: str, client: TestClient) -> None:
    assert kiln("models", "alias", "set", name, "production", "1").exit_code == 0
    by_alias = json.loads(kiln("models", "show", name, "production", "--json").stdout)
    assert by_alias == client.get(f"/models/{name}/versions/1").json()
    assert json.loads(kiln("models", "show", name, "latest", "--json").stdout)["version"] == 2
    assert json.loads(kiln("models", "show", name, "v1", "--json").stdout)["version"] == 1
    missing = kiln("models", "show", name, "canary")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: 404 Not Found: ")


def test_dataset_show(kiln: Kiln, client: TestClient, tmp_path: Path) -> None:
    csv = tmp_path / "toy.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(20)))
    up = kiln("datasets", "upload", str(csv), "--target", "y", "--json")
    assert up.exit_code == 0, up.output
    uploaded = json.loads(up.stdout)
    shown = kiln("datasets", "show", uploaded["id"], "--json")
    assert json.loads(shown.stdout) == client.get(f"/datasets/{uploaded['id']}").json()
    table = kiln("datasets", "show", uploaded["id"])
    assert table.exit_code == 0, table.output
    assert f"{uploaded['id']}: toy.csv (table, 20×2, target 'y')" in table.stdout
    quiet = kiln("datasets", "upload", str(csv), "--target", "y", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert client.get(f"/datasets/{quiet.stdout.strip()}").json()["name"] == "toy.csv"


@pytest.mark.parametrize("command", [["set", "production", "1"], ["delete", "production"]])
def test_alias_moves_print_the_event(kiln: Kiln, name: str, command: list[str]) -> None:
    if command[0] == "delete":
        assert kiln("models", "alias", "set", name, "production", "2").exit_code == 0
    out = kiln("models", "alias", command[0], name, *command[1:], "--json")
    assert out.exit_code == 0, out.output
    event = json.loads(out.stdout)
    assert event["alias"] == "production"
    assert event["to_version"] == (1 if command[0] == "set" else None)
