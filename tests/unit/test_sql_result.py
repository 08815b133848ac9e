"""The shared SQL result shape (spec 3.2) and what a loop iterates."""

from __future__ import annotations

from engine.protocol.sql_result import StatementResult, is_sql_result, loop_items, sql_result


def test_no_statement_with_a_row_set_gives_empty_top_level_rows_and_columns() -> None:
    result = sql_result([StatementResult(affected=3), StatementResult(affected=-1)])
    assert result == {"rows": [], "row_count": 0, "columns": [], "statement_count": 2,
                      "command_0": {"rows": [], "row_count": 3, "columns": []},
                      "command_1": {"rows": [], "row_count": 0, "columns": []}}


def test_a_loop_iterates_the_rows_of_a_sql_result_and_anything_else_as_it_is() -> None:
    rows = [{"id": 1}, {"id": 2}]
    assert loop_items(sql_result([StatementResult(["id"], rows)])) == rows
    assert loop_items([1, 2]) == [1, 2]
    lookalike = {"rows": rows, "total": 2}  # a mapping with `rows` but not the whole shape
    assert not is_sql_result(lookalike) and loop_items(lookalike) is lookalike
