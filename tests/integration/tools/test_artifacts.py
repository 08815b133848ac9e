"""Large results go to files by reference and come back intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.protocol.sql_result import StatementResult, sql_result
from engine.tools.artifacts import ArtifactError, externalize, json_size, resolve


def test_small_data_stays_inline(tmp_path: Path) -> None:
    data = {"rows": [1, 2, 3]}
    assert externalize(data, tmp_path) == (data, None)
    assert not (tmp_path / "artifacts").exists()


def test_fifty_thousand_rows_round_trip_through_arrow(tmp_path: Path) -> None:
    rows = [{"id": i, "name": f"user-{i}", "score": i / 7, "active": i % 2 == 0,
             "note": None if i % 3 else "x"} for i in range(50_000)]
    inline, ref = externalize(rows, tmp_path)
    assert inline is None and ref is not None
    assert ref.format == "arrow" and ref.row_count == 50_000 and ref.uri.startswith("file://")
    assert ref.schema_ == {"id": "int64", "name": "string", "score": "double", "active": "bool",
                           "note": "string"}
    assert ref.preview == rows[:5]
    assert 0 < ref.size < json_size(rows)
    assert resolve(ref) == rows
    assert resolve(ref.model_dump(by_alias=True)) == rows


def test_nested_or_ragged_data_is_stored_as_json(tmp_path: Path) -> None:
    nested = [{"id": i, "tags": ["a", "b"], "meta": {"i": i}} for i in range(3000)]
    _, ref = externalize(nested, tmp_path)
    assert ref is not None and ref.format == "json" and ref.row_count == 3000
    assert resolve(ref) == nested
    ragged = [{"a": i} if i % 2 else {"b": str(i)} for i in range(10000)]
    _, ref = externalize(ragged, tmp_path)
    assert ref is not None and ref.format == "json" and resolve(ref) == ragged


def test_a_column_mixing_types_is_stored_as_json(tmp_path: Path) -> None:
    rows = [{"v": i if i % 2 else str(i)} for i in range(10000)]
    _, ref = externalize(rows, tmp_path)
    assert ref is not None and ref.format == "json" and resolve(ref) == rows


def test_a_large_mapping_is_json_with_a_small_preview(tmp_path: Path) -> None:
    data = {f"key{i}": "v" * 100 for i in range(2000)}
    _, ref = externalize(data, tmp_path, threshold_bytes=1000)
    assert ref is not None and ref.format == "json" and ref.row_count is None
    assert json_size(ref.preview) <= 4096 and list(ref.preview)[0] == "key0"
    assert resolve(ref) == data


def test_a_large_sql_result_stores_its_rows_once_as_arrow_and_reads_back_whole(tmp_path: Path) -> None:
    rows = [{"id": i, "label": f"row-{i}"} for i in range(20_000)]
    result = sql_result([StatementResult(affected=0), StatementResult(["n"], [{"n": 1}]),
                         StatementResult(["id", "label"], rows), StatementResult(affected=3)])
    inline, ref = externalize(result, tmp_path)
    assert inline is None and ref is not None
    assert ref.format == "arrow" and ref.row_count == 20_000
    assert ref.schema_ == {"id": "int64", "label": "string"}
    assert ref.preview == {"rows": rows[:5], "row_count": 20_000, "columns": ["id", "label"],
                           "statement_count": 4}
    assert ref.size < json_size(rows)  # one copy, although `rows` and `command_2.rows` are both the rows
    whole = resolve(ref)
    assert whole == result and list(whole) == list(result)
    assert whole["command_2"]["rows"] == rows and whole["command_1"]["rows"] == [{"n": 1}]


def test_a_large_sql_result_whose_rows_are_not_flat_is_stored_as_json(tmp_path: Path) -> None:
    rows = [{"id": i, "tags": ["a", "b"]} for i in range(5000)]
    result = sql_result([StatementResult(["id", "tags"], rows)])
    _, ref = externalize(result, tmp_path)
    assert ref is not None and ref.format == "json" and ref.row_count == 5000
    assert ref.preview["rows"] == rows[:5] and resolve(ref) == result


def test_the_threshold_is_configurable(tmp_path: Path) -> None:
    data = list(range(100))
    assert externalize(data, tmp_path, threshold_bytes=10_000)[1] is None
    inline, ref = externalize(data, tmp_path, threshold_bytes=10)
    assert inline is None and ref is not None and json.loads(Path(ref.uri[7:]).read_text()) == data


def test_a_missing_artifact_is_a_clear_error(tmp_path: Path) -> None:
    _, ref = externalize(list(range(50_000)), tmp_path)
    assert ref is not None
    Path(ref.uri[len("file://"):]).unlink()
    with pytest.raises(ArtifactError, match="does not exist"):
        resolve(ref)
