"""SQL splitting knows where a semicolon is not a separator; values become JSON-friendly."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pytest

from engine.tools.sql_split import clickhouse_placeholders, pyformat_placeholders, split_sql, statement_at
from engine.tools.values import UnserialisableValue, to_json_value


def texts(sql: str, dialect: str = "postgres") -> list[str]:
    return [s.text for s in split_sql(sql, dialect)]  # type: ignore[arg-type]


def test_semicolons_inside_literals_comments_and_bodies_do_not_split() -> None:
    sql = ("SELECT 'a;b', \"odd;name\" FROM t; -- trailing; comment\n"
           "/* block; /* nested; */ still */ SELECT $$x;y$$, $tag$p;q$tag$;"
           "SELECT E'it\\'s;fine'; SELECT 'it''s;fine';;  ")
    assert texts(sql) == ["SELECT 'a;b', \"odd;name\" FROM t",
                          "-- trailing; comment\n/* block; /* nested; */ still */ "
                          "SELECT $$x;y$$, $tag$p;q$tag$",
                          "SELECT E'it\\'s;fine'", "SELECT 'it''s;fine'"]


def test_clickhouse_strings_use_backslash_escapes_and_backticks() -> None:
    sql = "SELECT 'a\\';b', `c;d` FROM t; SELECT 2"
    assert texts(sql, "clickhouse") == ["SELECT 'a\\';b', `c;d` FROM t", "SELECT 2"]


def test_comment_only_statements_are_dropped_and_keywords_found() -> None:
    statements = split_sql("-- just a comment;\n; (WITH x AS (SELECT 1) SELECT * FROM x)")
    assert [s.keyword for s in statements] == ["WITH"]


def test_placeholders_are_counted_outside_literals_only() -> None:
    [statement] = split_sql("SELECT %s, %(name)s, '%s', 100%% FROM t WHERE a = %(name)s")
    assert pyformat_placeholders(statement) == (1, {"name"})
    [ch] = split_sql("SELECT {id:UInt32}, '{not:String}'", "clickhouse")
    assert clickhouse_placeholders(ch) == (0, {"id"})


def test_a_character_offset_maps_to_its_statement() -> None:
    sql = "SELECT 1; SELECT 2;\nSELECT 3"
    assert [statement_at(sql, sql.index(f"SELECT {n}")) for n in (1, 2, 3)] == [1, 2, 3]


def test_values_convert_to_json_friendly_types() -> None:
    value = {"d": Decimal("1.25"), "i": Decimal("4"), "inf": math.inf, "ts": dt.datetime(2024, 5, 6, 7, 8),
             "day": dt.date(2024, 5, 6), "t": dt.time(1, 2), "span": dt.timedelta(minutes=2),
             "raw": b"\x00\x01", "u": uuid.UUID(int=2), "set": {"b", "a"}, 1: "int key"}
    assert to_json_value(value) == {"d": 1.25, "i": 4, "inf": None, "ts": "2024-05-06T07:08:00",
                                    "day": "2024-05-06", "t": "01:02:00", "span": 120.0, "raw": "AAE=",
                                    "u": "00000000-0000-0000-0000-000000000002", "set": ["a", "b"],
                                    "1": "int key"}


def test_an_unknown_type_is_an_error_in_strict_mode_and_text_in_lenient_mode() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    with pytest.raises(UnserialisableValue, match=r"result\['a'\]\[0\]"):
        to_json_value({"a": [Thing()]})
    assert to_json_value({"a": [Thing()]}, strict=False) == {"a": ["a thing"]}


def test_a_circular_value_is_an_error() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(UnserialisableValue, match="circular"):
        to_json_value(loop)
