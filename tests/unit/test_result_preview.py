"""What `noetl run` shows of a result on the terminal: all of a small one, the start of a large one and
what was left out (`--json` prints it whole)."""

from __future__ import annotations

import json

from noetl.progress import preview


def test_a_small_result_is_shown_whole() -> None:
    assert preview({"n": 1, "names": ["a", "b"]}) == '{"n": 1, "names": ["a", "b"]}'
    assert preview(list(range(10))) == json.dumps(list(range(10)))


def test_a_long_list_shows_its_first_items_and_how_many_more_there_are() -> None:
    shown = preview([{"id": i} for i in range(2000)])
    assert shown.startswith('[{"id": 0}, {"id": 1}')
    assert '{"id": 9}]' in shown and '{"id": 10}' not in shown
    assert shown.endswith("… 1990 more items; use --json for all of them")


def test_a_long_text_is_cut_saying_how_much_was_left_out() -> None:
    shown = preview({"blob": "y" * 5000}, chars=100)
    assert len(shown.split(" … ")[0]) == 100
    assert shown.endswith(f"… {len(json.dumps({'blob': 'y' * 5000})) - 100} more characters; "
                          "use --json for all of it")


def test_a_list_of_large_items_is_cut_by_characters_as_well() -> None:
    shown = preview(["x" * 1000] * 50, chars=2500)
    assert "more characters; use --json" in shown
