"""The python tool runs user code in pooled child interpreters and turns every failure into an envelope."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.results import ResultEnvelope
from engine.tools.python_pool import PythonPool
from engine.tools.python_tool import PythonTool
from tests.harness.polling import poll
from tests.integration.tools.conftest import free_port, make_call

pytestmark = pytest.mark.anyio


async def run(pool: PythonPool, code: str | None = None, **fields: Any) -> ResultEnvelope:
    config = dict(fields.pop("config", {}))
    if code is not None:
        config["code"] = code
    return await PythonTool(pool).run(make_call("python", config, **fields))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ------------------------------------------------------------------------------------ inputs

async def test_inputs_are_globals_and_input_data(pool: PythonPool) -> None:
    env = await run(pool, "result = {'g': a + b, 'd': input_data}", input={"a": 1, "b": 2})
    assert env.status == "ok"
    assert env.data == {"g": 3, "d": {"a": 1, "b": 2}}


async def test_main_receives_only_the_parameters_it_declares(pool: PythonPool) -> None:
    env = await run(pool, "def main(a, b=10):\n    return [a, b]", input={"a": 1, "c": 3})
    assert env.data == [1, 10]


async def test_main_with_kwargs_receives_every_input(pool: PythonPool) -> None:
    env = await run(pool, "def main(a, **rest):\n    return {'a': a, 'rest': rest}",
                    input={"a": 1, "b": 2, "c": 3})
    assert env.data == {"a": 1, "rest": {"b": 2, "c": 3}}


async def test_input_keys_that_are_not_identifiers_stay_in_input_data(pool: PythonPool) -> None:
    env = await run(pool, "result = [input_data['my-key'], 'my-key' in globals()]", input={"my-key": 5})
    assert env.data == [5, False]


async def test_context_is_a_read_only_copy(pool: PythonPool) -> None:
    ok = await run(pool, "result = [context['workload']['n'], list(context['items'])]",
                   context={"workload": {"n": 7}, "items": [1, 2]})
    assert ok.data == [7, [1, 2]]
    err = await run(pool, "context['x'] = 1", context={"workload": {}})
    assert err.status == "error" and err.error is not None
    assert err.error.kind == "python_exception" and err.error.type == "TypeError"


async def test_libs_are_imported_under_their_alias(pool: PythonPool) -> None:
    env = await run(pool, "result = [m.sqrt(16), js.dumps([1])]",
                    config={"libs": {"m": "math", "js": "json"}})
    assert env.data == [4.0, "[1]"]


async def test_a_missing_lib_is_a_python_exception(pool: PythonPool) -> None:
    env = await run(pool, "result = 1", config={"libs": {"x": "no_such_module_here"}})
    assert env.error is not None and env.error.kind == "python_exception"
    assert env.error.type == "ModuleNotFoundError"


# ------------------------------------------------------------------------------------ results

async def test_main_return_wins_over_global_result(pool: PythonPool) -> None:
    env = await run(pool, "result = 'global'\ndef main():\n    return 'main'")
    assert env.data == "main"


async def test_a_top_level_return_is_the_result(pool: PythonPool) -> None:
    env = await run(pool, "if x > 1:\n    return {'big': x}\nreturn {'small': x}", input={"x": 5})
    assert env.data == {"big": 5}


async def test_code_with_a_top_level_return_that_falls_off_the_end_gives_its_result(
        pool: PythonPool) -> None:
    env = await run(pool, "if x > 100:\n    return 'big'\nresult = 'fell through'", input={"x": 5})
    assert env.data == "fell through"


async def test_the_global_result_is_the_result_without_main(pool: PythonPool) -> None:
    assert (await run(pool, "result = [1, 2, 3]")).data == [1, 2, 3]


async def test_no_result_at_all_is_null(pool: PythonPool) -> None:
    env = await run(pool, "x = 1")
    assert env.status == "ok" and env.data is None


async def test_async_main_and_top_level_await_are_awaited(pool: PythonPool) -> None:
    env = await run(pool, "import asyncio\nasync def main(n):\n    await asyncio.sleep(0)\n    return n",
                    input={"n": 4})
    assert env.data == 4
    env = await run(pool, "import asyncio\nawait asyncio.sleep(0)\nresult = 'awaited'")
    assert env.data == "awaited"


async def test_a_returned_error_status_is_data_not_an_error(pool: PythonPool) -> None:
    env = await run(pool, "def main():\n    return {'status': 'error', 'message': 'soft'}")
    assert env.status == "ok" and env.data == {"status": "error", "message": "soft"}


async def test_datetimes_decimals_sets_and_bytes_are_converted(pool: PythonPool) -> None:
    code = ("import datetime, decimal, uuid\n"
            "result = {'d': datetime.date(2024, 1, 2), 'ts': datetime.datetime(2024, 1, 2, 3, 4, 5),"
            " 'n': decimal.Decimal('2.50'), 'i': decimal.Decimal('3'), 's': {3, 1, 2}, 'b': b'hi',"
            " 'u': uuid.UUID(int=1), 't': (1, 2), 'nan': float('nan')}")
    env = await run(pool, code)
    assert env.data == {"d": "2024-01-02", "ts": "2024-01-02T03:04:05", "n": 2.5, "i": 3,
                        "s": [1, 2, 3], "b": "aGk=", "u": "00000000-0000-0000-0000-000000000001",
                        "t": [1, 2], "nan": None}


async def test_a_result_with_no_json_form_is_an_error_naming_where_it_is(pool: PythonPool) -> None:
    env = await run(pool, "result = {'rows': [1, object()]}")
    assert env.error is not None and env.error.kind == "python_exception"
    assert "result['rows'][1]" in env.error.message and "object" in env.error.message


# ------------------------------------------------------------------------------------ output

async def test_print_output_is_captured_in_meta(pool: PythonPool) -> None:
    env = await run(pool, "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nresult = 1")
    extra = env.meta.model_extra or {}
    assert extra["stdout"] == "hello\n" and extra["stderr"] == "oops\n"


async def test_print_output_is_bounded_to_its_tail(pool: PythonPool) -> None:
    env = await run(pool, "for i in range(20000):\n    print(f'line {i:05d} ' + 'x' * 20)")
    extra = env.meta.model_extra or {}
    assert len(extra["stdout"]) <= 64 * 1024 and extra["output_truncated"] is True
    assert extra["stdout"].endswith("line 19999 " + "x" * 20 + "\n")


async def test_printing_does_not_corrupt_the_channel_to_the_worker(pool: PythonPool) -> None:
    code = "import os\nos.write(1, b'raw bytes on fd 1\\n')\nprint('\\x00 binaryish')\nresult = 'fine'"
    env = await run(pool, code)
    assert env.data == "fine"
    assert (await run(pool, "result = 2")).data == 2


# ------------------------------------------------------------------------------------ errors

async def test_an_exception_carries_type_message_and_traceback(pool: PythonPool) -> None:
    env = await run(pool, "def main():\n    raise ValueError('bad value 42')")
    assert env.status == "error" and env.error is not None
    assert env.error.kind == "python_exception" and env.error.retryable is False
    assert env.error.type == "ValueError" and env.error.message == "bad value 42"
    assert env.error.traceback is not None
    assert 'File "<python step>", line 2, in main' in env.error.traceback
    assert "python_runner" not in env.error.traceback


async def test_a_refused_connection_is_a_retryable_connection_error(pool: PythonPool) -> None:
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {free_port()}), timeout=5)"
    env = await run(pool, code)
    assert env.error is not None and env.error.kind == "connection" and env.error.retryable is True
    assert env.error.type == "ConnectionRefusedError"


async def test_a_wrapped_connection_error_is_found_in_the_cause_chain(pool: PythonPool) -> None:
    code = (f"import urllib.request\n"
            f"urllib.request.urlopen('http://127.0.0.1:{free_port()}/', timeout=5)")
    env = await run(pool, code)
    assert env.error is not None and env.error.kind == "connection"
    assert env.error.type == "urllib.error.URLError"


async def test_a_timeout_error_in_user_code_is_a_retryable_timeout(pool: PythonPool) -> None:
    env = await run(pool, "raise TimeoutError('upstream too slow')")
    assert env.error is not None and env.error.kind == "timeout" and env.error.retryable is True


async def test_a_memory_error_is_resource_exhausted(pool: PythonPool) -> None:
    env = await run(pool, "raise MemoryError()")
    assert env.error is not None and env.error.kind == "resource_exhausted"


async def test_a_syntax_error_is_a_python_exception(pool: PythonPool) -> None:
    env = await run(pool, "def broken(:\n    pass")
    assert env.error is not None and env.error.kind == "python_exception"
    assert env.error.type == "SyntaxError"


# ------------------------------------------------------------------------------------ isolation

async def test_a_timeout_kills_the_child_and_the_pool_keeps_serving(pool: PythonPool) -> None:
    pids_before = set(await pool.idle_pids())
    started = time.perf_counter()
    env = await run(pool, "while True:\n    pass", timeout_s=0.5)
    assert time.perf_counter() - started < 3
    assert env.error is not None and env.error.kind == "timeout" and env.error.retryable is True
    pids_after = set(await pool.idle_pids())
    killed = pids_before - pids_after
    assert len(killed) == 1 and gone(killed.pop())
    assert len(pids_after) == 2
    assert (await run(pool, "result = 'still here'")).data == "still here"


async def test_the_smaller_of_the_call_and_config_timeouts_wins(pool: PythonPool) -> None:
    started = time.perf_counter()
    env = await run(pool, "import time\ntime.sleep(30)", timeout_s=20, config={"timeout": "300ms"})
    assert env.error is not None and env.error.kind == "timeout"
    assert time.perf_counter() - started < 3


async def test_sys_exit_with_an_error_code_is_an_error_and_the_process_survives(pool: PythonPool) -> None:
    spawned = pool.spawned
    env = await run(pool, "import sys\nsys.exit(3)")
    assert env.error is not None and env.error.kind == "python_exception"
    assert env.error.type == "SystemExit" and "sys.exit(3)" in env.error.message
    assert (await run(pool, "import sys\nresult = 'done'\nsys.exit(0)")).data == "done"
    assert pool.spawned == spawned


async def test_os_exit_loses_the_child_which_is_replaced(pool: PythonPool) -> None:
    env = await run(pool, "import os\nos._exit(7)")
    assert env.error is not None and env.error.kind == "python_exception"
    assert env.error.type == "ProcessExit" and "code 7" in env.error.message
    assert len(await pool.idle_pids()) == 2
    assert (await run(pool, "result = 1")).data == 1


async def test_a_child_killed_by_sigkill_is_reported_as_resource_exhausted(pool: PythonPool) -> None:
    env = await run(pool, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert env.error is not None and env.error.kind == "resource_exhausted"
    assert "SIGKILL" in env.error.message
    assert (await run(pool, "result = 1")).data == 1


async def test_a_huge_allocation_is_resource_exhausted_and_the_child_replaced(pool: PythonPool) -> None:
    spawned = pool.spawned
    env = await run(pool, "blob = bytearray(8 * 1024 ** 3)")
    assert env.error is not None and env.error.kind == "resource_exhausted"
    assert "out of memory" in env.error.message
    assert len(await pool.idle_pids()) == 2 and pool.spawned == spawned + 1
    assert (await run(pool, "result = len(bytearray(10 * 1024 ** 2))")).data == 10 * 1024 ** 2


async def test_a_gradual_memory_blow_up_is_resource_exhausted(pool: PythonPool) -> None:
    env = await run(pool, "chunks = []\nwhile True:\n    chunks.append(bytearray(4 * 1024 ** 2))",
                    timeout_s=30)
    assert env.error is not None and env.error.kind == "resource_exhausted"
    assert (await run(pool, "result = 'ok'")).data == "ok"


async def test_a_cancelled_call_kills_its_child(pool: PythonPool, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    task = asyncio.ensure_future(run(pool, f"import time\nopen({str(marker)!r}, 'w').close()\n"
                                           "time.sleep(60)"))
    await poll(marker.exists, timeout_s=10, what="the child to run the code")
    busy = pool.spawned
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(await pool.idle_pids()) == 2 and pool.spawned == busy + 1
    assert (await run(pool, "result = 'after cancel'")).data == "after cancel"


async def test_state_changes_of_one_run_do_not_leak_into_the_next(pool: PythonPool) -> None:
    small = PythonPool(1, memory_limit_bytes=0)
    async with small:
        await run(small, "import os, sys\nos.environ['LEAK'] = '1'\nsys.path.insert(0, '/leak')\n"
                         "os.chdir('/')\nleaked_global = 1")
        env = await run(small, "import os, sys\nresult = [os.environ.get('LEAK'), '/leak' in sys.path, "
                               "'leaked_global' in globals()]")
    assert env.data == [None, False, False]


async def test_two_calls_run_in_parallel_on_a_pool_of_two(pool: PythonPool) -> None:
    started = time.perf_counter()
    results = await asyncio.gather(*(run(pool, "import time\ntime.sleep(0.5)\nresult = 1")
                                      for _ in range(2)))
    assert [r.data for r in results] == [1, 1]
    assert time.perf_counter() - started < 1.0  # one after the other would take at least 1 s


# ------------------------------------------------------------------------------------ scripts

async def test_a_script_is_read_from_a_path_or_a_file_uri(pool: PythonPool, tmp_path: Path) -> None:
    script = tmp_path / "step.py"
    script.write_text("def main(x):\n    return x + 1\n")
    assert (await run(pool, config={"script": {"uri": str(script)}}, input={"x": 1})).data == 2
    assert (await run(pool, config={"script": {"uri": script.as_uri()}}, input={"x": 2})).data == 3


async def test_a_failing_script_names_its_file_in_the_traceback(pool: PythonPool, tmp_path: Path) -> None:
    script = tmp_path / "failing.py"
    script.write_text("x = 1\nraise RuntimeError('from the script')\n")
    env = await run(pool, config={"script": {"uri": str(script)}})
    assert env.error is not None and env.error.traceback is not None
    assert f'File "{script}", line 2' in env.error.traceback


async def test_remote_and_missing_scripts_are_validation_errors(pool: PythonPool, tmp_path: Path) -> None:
    remote = await run(pool, config={"script": {"uri": "s3://bucket/step.py"}})
    assert remote.error is not None and remote.error.kind == "validation"
    assert "not supported" in remote.error.message
    missing = await run(pool, config={"script": {"uri": str(tmp_path / "nope.py")}})
    assert missing.error is not None and missing.error.kind == "validation"


async def test_the_work_dir_is_the_current_directory(pool: PythonPool, tmp_path: Path) -> None:
    env = await run(pool, "import os\nresult = os.getcwd()", work_dir=tmp_path)
    assert env.data == str(tmp_path)


async def test_a_closed_pool_is_an_internal_error_not_an_exception() -> None:
    closed = PythonPool(1)
    await closed.start()
    await closed.close()
    env = await run(closed, "result = 1")
    assert env.error is not None and env.error.kind == "internal"


async def test_a_pool_starts_its_warm_children_and_grows_to_its_size_on_demand() -> None:
    async with PythonPool(3, warm=1, memory_limit_bytes=0) as growing:
        assert growing.spawned == 1 and len(await growing.idle_pids()) == 1
        results = await asyncio.gather(*(run(growing, "import time\ntime.sleep(0.3)\nresult = 1")
                                         for _ in range(3)))
        assert [r.data for r in results] == [1, 1, 1]
        assert growing.spawned == 3 and len(await growing.idle_pids()) == 3  # they stay
        await asyncio.gather(*(run(growing, "result = 2") for _ in range(5)))
        assert growing.spawned == 3  # never more than its size


async def test_the_same_code_keeps_giving_fresh_results_on_a_warm_child() -> None:
    async with PythonPool(1, memory_limit_bytes=0) as one:
        pids = set(await one.idle_pids())
        for x in range(5):
            assert (await run(one, "result = x * x", input={"x": x})).data == x * x
        assert (await run(one, "result = x * x + 1", input={"x": 3})).data == 10  # a changed text
        assert set(await one.idle_pids()) == pids  # all in the same interpreter
