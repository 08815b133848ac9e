"""`noetl validate` and `noetl schema` as a user runs them: exit codes, stderr lines, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import CORPUS, EXAMPLES

LINE = r"^\S+:\d+:\d+ \S+: .+$"


def noetl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "noetl.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_valid_playbooks_exit_zero() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    result = noetl("validate", *map(str, files))
    assert result.returncode == 0, result.stderr
    assert f"{len(files)} playbooks valid" in result.stderr


def test_an_invalid_playbook_prints_every_problem_as_a_located_line_and_exits_one(tmp_path: Path) -> None:
    bad = tmp_path / "score.yaml"
    bad.write_text(
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: score}\n"
        "worklfow: 1\n"
        "workflow:\n"
        "  - step: score\n"
        "    tool: {kind: noop}\n"
        "    next: {arcs: [{step: scroe}]}\n"
        "  - step: b\n"
        "    tool: {kind: pyhton}\n")
    result = noetl("validate", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert f"{bad}:4:1 worklfow: unknown key 'worklfow' at the top level; did you mean 'workflow'?" \
        in lines[0]
    assert f"{bad}:8:26 workflow[0].next.arcs[0].step: unknown step 'scroe'; did you mean 'score'?" \
        in lines
    assert any(line.startswith(f"{bad}:10:18 workflow[1].tool.kind: unknown tool kind 'pyhton'")
               for line in lines)
    assert len(lines) == 3


def test_json_output_lists_file_line_column_path_message_and_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: b}\n"
                   "workflow:\n  - step: a\n    loop: {iterator: x}\n    tool: {kind: noop}\n")
    result = noetl("validate", "--json", str(bad))
    assert result.returncode == 1
    problems = json.loads(result.stdout)
    assert problems == [{"file": str(bad), "line": 6, "column": 11, "path": "workflow[0].loop",
                         "message": problems[0]["message"], "code": "loop_without_in",
                         "severity": "error"}]
    assert "'loop' has no 'in'" in problems[0]["message"]


def test_an_unreadable_file_exits_two_even_beside_invalid_ones(tmp_path: Path) -> None:
    bad = CORPUS / "invalid" / "s04_arc_unknown_step.yaml"
    result = noetl("validate", str(bad), str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert noetl("validate", str(binary)).returncode == 2


def test_warnings_pass_unless_strict() -> None:
    warned = CORPUS / "valid" / "w_unreachable_step.yaml"
    relaxed = noetl("validate", str(warned))
    assert relaxed.returncode == 0
    assert "warning: step 'orphan' is unreachable" in relaxed.stderr
    strict = noetl("validate", "--strict", "--json", str(warned))
    assert strict.returncode == 1
    assert json.loads(strict.stdout)[0]["severity"] == "error"


@pytest.fixture(scope="module")
def schema() -> dict:
    result = noetl("schema")
    assert result.returncode == 0
    return json.loads(result.stdout)


def test_the_schema_is_a_valid_json_schema(schema: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")) + sorted((CORPUS / "valid").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_the_schema_accepts_every_valid_playbook_in_short_or_canonical_form(schema: dict, path: Path) -> None:
    data = yaml.load(path.read_text(), Loader=yaml.BaseLoader)  # strings only: types vary by loader
    data = json.loads(json.dumps(_typed(path)))
    jsonschema.validate(data, schema)


@pytest.mark.parametrize("name", ["s01_root_unknown_key", "s03_unknown_tool_kind", "s02_step_unknown_key",
                                  "s04_bad_next_mode", "s06_loop_bad_mode", "s06_cursor_unknown_kind",
                                  "s06_cursor_with_in", "s06_cursor_without_claim"])
def test_the_schema_rejects_what_validate_rejects(schema: dict, name: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_typed(CORPUS / "invalid" / f"{name}.yaml"), schema)


def _typed(path: Path) -> object:
    from engine.dsl.source import load_yaml

    return load_yaml(path.read_text()).data
