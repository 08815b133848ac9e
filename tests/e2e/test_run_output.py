"""What `noetl run` prints for a person: a large result is cut on the terminal, whole with --json."""

from __future__ import annotations

from tests.e2e.helpers import Noetl, inline

LARGE = inline("large_result", """\
    workflow:
      - step: rows
        tool: {kind: python, code: "result = [{'id': i} for i in range(2000)]"}
    """)


def test_a_large_list_result_shows_its_first_items_and_says_how_to_get_all_of_it(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(LARGE)
    shown = e2e_stack("run", str(file))
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stderr.splitlines() if line.startswith("result: ")]
    assert line.startswith('result: [{"id": 0}, {"id": 1}') and '{"id": 10}' not in line
    assert line.endswith("… 1990 more items; use --json for all of them")
    code, doc = e2e_stack.run_json(file)
    assert code == 0 and [row["id"] for row in doc["result"]] == list(range(2000))
