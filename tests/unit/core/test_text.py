"""core/text.py: names a client chose are written into log lines without control
characters, so one cannot forge a line or drive a terminal."""

from __future__ import annotations

import logging

import pytest

from core.text import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("iris", "iris"),
        ("evil\nINFO forged line", "evil?INFO forged line"),
        ("a\r\x1b[2Jb\x00c\x7f\x9b", "a??[2Jb?c??"),
        ("tab\there", "tab?here"),
        ("déjà-vu_1.2", "déjà-vu_1.2"),
    ],
)
def test_control_characters_are_replaced(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_a_long_name_is_cut_to_the_limit() -> None:
    assert printable("x" * 500, limit=200) == "x" * 199 + "…"
    assert len(printable("y" * 200, limit=200)) == 200


def test_a_logged_name_stays_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("kiln.test").info("model '%s' loaded", printable("a\nb"))
    assert caplog.text.count("\n") == 1
