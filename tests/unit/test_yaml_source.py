"""Reading YAML: the 1.2 core schema, positions of every node, and hostile documents."""

from __future__ import annotations

import pytest

from engine.dsl.source import YamlSyntaxError, load_yaml


def test_yaml_1_1_words_are_not_booleans_and_dates_stay_text() -> None:
    doc = load_yaml("on: yes\noff: no\ny: n\nday: 2026-11-23\nt: true\nf: False\nn: ~\ne:\n")
    assert doc.data == {"on": "yes", "off": "no", "y": "n", "day": "2026-11-23", "t": True,
                        "f": False, "n": None, "e": None}


def test_numbers_follow_the_core_schema() -> None:
    doc = load_yaml("a: 0o17\nb: 0x1F\nc: 1e3\nd: .inf\ne: -7\nf: 017\ng: 1_000\n")
    assert doc.data == {"a": 15, "b": 31, "c": 1000.0, "d": float("inf"), "e": -7, "f": 17, "g": "1_000"}


def test_every_value_and_key_has_its_line_and_column() -> None:
    doc = load_yaml("a:\n  b: [1, {c: 2}]\n")
    assert doc.key_marks[("a", "b")] == (2, 3)
    assert doc.value_marks[("a", "b")] == (2, 6)
    assert doc.value_marks[("a", "b", 1, "c")] == (2, 14)
    assert doc.mark_of(("a", "b", 1, "missing")) == (2, 10)


def test_a_duplicate_key_is_reported_where_it_repeats() -> None:
    doc = load_yaml("a: 1\nb: 2\na: 3\n")
    assert doc.data == {"a": 1, "b": 2}
    assert [(i.code, i.path) for i in doc.issues] == [("duplicate_key", ("a",))]
    assert doc.mark_of(("a",), on_key=True) == (3, 1)


def test_anchors_aliases_and_merge_keys_work() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nref: *b\n")
    assert doc.data["use"] == {"x": 1, "y": 3}
    assert doc.data["ref"] == {"x": 1, "y": 2}


def test_an_alias_bomb_is_refused_with_a_location() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(YamlSyntaxError) as err:
        load_yaml("\n".join(lines))
    assert "aliases" in err.value.message
    assert err.value.line >= 1


def test_python_object_tags_are_refused_not_executed() -> None:
    doc = load_yaml("a: !!python/object/apply:os.system ['echo pwned']\n")
    assert any(i.code == "yaml_tag" for i in doc.issues)


def test_a_syntax_error_has_its_line_and_column() -> None:
    with pytest.raises(YamlSyntaxError) as err:
        load_yaml("a: [1, 2\nb: 3\n")
    assert (err.value.line, err.value.column) == (2, 2)
