"""`noetl why` end to end: the README's failing example run with `noetl run`, then diagnosed through the
command line (real processes, the session's real NATS and Postgres)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import EXAMPLES


def noetl(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "noetl.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_noetl_why_explains_the_failing_example(runtime_env: dict[str, str]) -> None:
    env = {k: v for k, v in runtime_env.items()
           if k not in ("NOETL_SERVER_URL", "NOETL_LLM_BASE_URL", "NOETL_LLM_MODEL")}
    ran = noetl(env, "run", str(EXAMPLES / "17_why.yaml"), "--json")
    assert ran.returncode == 1, ran.stderr
    execution_id = json.loads(ran.stdout)["execution_id"]

    why = noetl(env, "why", execution_id, "--json")
    assert why.returncode == 0, why.stderr
    d = json.loads(why.stdout)
    assert (d["failed_step"], d["root_cause_step"], d["root_cause_type"], d["transience"]) == \
        ("average", "fetch_sales", "validation", "permanent")
    assert d["suggested_fixes"] and d["evidence"] and d["explained_by"] == "rules"

    text = noetl(env, "why", execution_id, "--no-llm")
    assert text.returncode == 0, text.stderr
    assert "root cause: step 'fetch_sales' - validation, permanent" in text.stdout
    assert "what to change:" in text.stdout

    unknown = noetl(env, "why", "no-such-execution", "--json")
    assert unknown.returncode == 2 and "no execution 'no-such-execution'" in unknown.stderr
