"""The python runner compiles a code text once and keeps it; every request still starts from a clean
state (fresh inputs, the working directory, sys.path and os.environ as they were)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.tools import python_runner
from engine.tools.python_runner import compiled, serve


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    python_runner._compiled.clear()
    yield
    python_runner._compiled.clear()


def request(code: str, **fields: Any) -> dict[str, Any]:
    return {"code": code, "filename": "<python step>", "input": {}, "context": {}, "libs": [], "cwd": None,
            **fields}


def test_the_same_code_text_is_compiled_once_and_a_changed_text_again() -> None:
    first = compiled("result = 1", "<python step>")
    assert compiled("result = 1", "<python step>") is first
    changed = compiled("result = 2", "<python step>")
    assert changed is not first
    assert serve(request("result = 1"), 1000)["data"] == 1
    assert serve(request("result = 2"), 1000)["data"] == 2
    assert serve(request("result = 1  # edited"), 1000)["data"] == 1


def test_the_cache_keeps_the_most_recently_used_texts_up_to_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_runner, "COMPILED_CACHE_SIZE", 2)
    a = compiled("result = 'a'", "<python step>")
    compiled("result = 'b'", "<python step>")
    assert compiled("result = 'a'", "<python step>") is a  # used again: now the most recent
    compiled("result = 'c'", "<python step>")  # drops 'b', the least recently used
    assert len(python_runner._compiled) == 2
    assert compiled("result = 'a'", "<python step>") is a
    assert ("result = 'b'", "<python step>") not in python_runner._compiled


def test_a_syntax_error_is_not_cached_and_names_its_line() -> None:
    for _ in range(2):
        reply = serve(request("x = 1\ndef (:\n"), 1000)
        assert reply["status"] == "error" and reply["type"] == "SyntaxError"
        assert "line 2" in reply["traceback"]
    assert not python_runner._compiled


def test_cached_code_sees_fresh_inputs_each_time() -> None:
    for x in (1, 2, 3):
        assert serve(request("result = x + 1", input={"x": x}), 1000)["data"] == x + 1
    for x in (10, 20):
        assert serve(request("def main(x):\n    return x * 2", input={"x": x}), 1000)["data"] == x * 2
        assert serve(request("return x - 1", input={"x": x}), 1000)["data"] == x - 1
    # a global set by one run is not there in the next run of the same text
    code = "result = [input_data, 'seen' in globals()]\nseen = True"
    assert serve(request(code, input={"a": 1}), 1000)["data"] == [{"a": 1}, False]
    assert serve(request(code, input={"a": 2}), 1000)["data"] == [{"a": 2}, False]


def test_tracebacks_show_the_lines_of_the_text_that_ran_when_texts_share_a_file_name() -> None:
    serve(request("a = 1\nraise ValueError('first')"), 1000)
    serve(request("result = 1"), 1000)
    reply = serve(request("b = 2\nraise ValueError('second text')"), 1000)
    assert "raise ValueError('second text')" in reply["traceback"]
    reply = serve(request("a = 1\nraise ValueError('first')"), 1000)  # cached, its lines again
    assert "raise ValueError('first')" in reply["traceback"]


def test_cwd_sys_path_argv_and_environ_are_restored_after_each_request(tmp_path: Path) -> None:
    home = os.getcwd()
    path, argv = list(sys.path), list(sys.argv)
    os.environ["NOETL_TEST_KEPT"] = "kept"
    try:
        code = ("import os, sys\nresult = os.getcwd()\nos.chdir('/')\nsys.path.insert(0, '/leak')\n"
                "sys.argv.append('leak')\nos.environ['NOETL_TEST_LEAK'] = '1'\n"
                "os.environ['NOETL_TEST_KEPT'] = 'changed'")
        for _ in range(2):  # the second run is from the cache
            assert serve(request(code, cwd=str(tmp_path)), 1000)["data"] == str(tmp_path)
            assert os.getcwd() == home and sys.path == path and sys.argv == argv
            assert "NOETL_TEST_LEAK" not in os.environ and os.environ["NOETL_TEST_KEPT"] == "kept"
        assert serve(request("import os\ndel os.environ['NOETL_TEST_KEPT']"), 1000)["status"] == "ok"
        assert os.environ["NOETL_TEST_KEPT"] == "kept"
        assert serve(request("import os\nresult = os.getcwd()"), 1000)["data"] == home
    finally:
        os.environ.pop("NOETL_TEST_KEPT", None)
        os.chdir(home)
