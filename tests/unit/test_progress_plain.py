"""Progress off a terminal writes the lines rich would print unchanged without importing rich: each
line plain_line lets through is byte for byte what rich's Console prints there."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from noetl.progress import _ICONS, PLAIN_WIDTH, RICH_ENVIRONMENT, plain_line, plain_possible

LINES = [
    "execution 2241043291894150228", "✔ only succeeded", "✖ boom failed after 3 attempts",
    "▶ rows running (12/2000 items, 0 failed)", "execution 2241043291894150228 completed", "result: {}",
    'result: {"a": 1, "b": [1, 2, 3]}', "result: [1, 2] … 1990 more items; use --json for all of them",
    "error: {'kind': 'python_exception', 'message': 'no good', 'traceback': 'Traceback\\n  File x'}",
    "a" * (PLAIN_WIDTH - 1), "a" * PLAIN_WIDTH, "a" * (PLAIN_WIDTH + 1), "word " * 30,
    "✔ step[0] succeeded", "✔ [bold]x[/bold] succeeded", "✔ a\\[b] succeeded", "✔ :smile: succeeded",
    "result: :thumbs_up:", "error: a:b:c", "✔ café succeeded", "✔ 漢字 succeeded", "✔  two  spaces",
    " leading", "trailing ", "tab\there", "bell\x07", "result: \"\\u00e9\"", "✔ a:b succeeded",
    "result: " + "x" * 300, "✔ http://example.com/a succeeded",
]
MODES = [{"markup": True, "soft_wrap": False}, {"markup": False, "soft_wrap": True}]


def _rich(text: str, markup: bool, soft_wrap: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=PLAIN_WIDTH, color_system=None, force_terminal=False)
    console.print(text, markup=markup, soft_wrap=soft_wrap, highlight=not soft_wrap)
    return out.getvalue()


@pytest.mark.parametrize("mode", MODES, ids=["markup", "soft_wrap"])
@pytest.mark.parametrize("text", LINES)
def test_a_line_written_plainly_is_what_rich_prints(text: str, mode: dict[str, bool]) -> None:
    if plain_line(text, **mode):
        assert _rich(text, **mode) == text + "\n"


def test_the_usual_lines_of_a_run_are_written_plainly() -> None:
    for icon in _ICONS.values():
        assert plain_line(f"{icon} a_step succeeded")
    assert plain_line("execution 2241043291894150228 completed")
    assert plain_line('result: {"rows": [1, 2, 3]}', markup=False, soft_wrap=True)
    assert not plain_line("✔ [b]x[/b] succeeded")
    assert not plain_line("a" * (PLAIN_WIDTH + 1))


def test_plain_lines_only_where_no_stream_is_a_terminal_and_rich_reads_no_setting() -> None:
    assert plain_possible({}, [False, False, False], "utf-8")
    assert not plain_possible({}, [True, False, False], "utf-8")  # rich takes a terminal's width
    assert not plain_possible({}, [False, False, False], "ascii")
    for name in RICH_ENVIRONMENT:
        assert not plain_possible({name: "1"}, [False, False, False], "UTF-8")
