"""`noetl insights`: the failures of a new playbook version become one cluster naming that version, and
the figures of its steps are there, locally (over the dev stack's Postgres) and through a server
(NOETL_SERVER_URL: GET /api/insights)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.e2e.helpers import Noetl
from tests.e2e.test_cli_client import Api, api  # noqa: F401  (the fixture: tokens of each role)

GOOD = """\
workflow:
  - step: fetch
    tool: {kind: python, code: "result = 1"}
    next: store
  - step: store
    tool: {kind: python, code: "result = 2"}
"""
BROKEN = """\
workflow:
  - step: fetch
    tool: {kind: python, code: "result = 1"}
    next: store
  - step: store
    tool:
      kind: python
      input: {n: "{{ execution_id }}"}
      code: |
        raise KeyError(f"column order_{str(n)[-4:]}_total is missing")
"""


def insights(cli: Noetl, *args: str) -> dict[str, Any]:
    result = cli("insights", *args, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_failures_that_came_with_a_new_version_are_one_cluster_naming_it_locally_and_through_the_server(
        noetl: Noetl, playbook: Callable[..., str], api: Api) -> None:  # noqa: F811
    """(`noetl run FILE` registers the file again each time: the test registers each version once.)"""
    good, broken = playbook(GOOD), playbook(BROKEN)
    path = "e2e/" + good.split("name: ")[1].split(",")[0]
    for text, status in ((good, "completed"), (broken, "failed")):  # versions 1 and 2, two runs each
        assert noetl("register", str(noetl.as_file(text))).returncode == 0
        for _ in range(2):
            ran = noetl("execute", "playbook", path, "--wait", "--json")
            assert json.loads(ran.stdout)["status"] == status, ran.stdout[-2000:]
    report = insights(noetl, path, "--since", "1h")
    assert report["executions"] == 4 and report["outcomes"]["failed"] == 2
    [cluster] = report["clusters"]
    assert cluster["count"] == 2 and cluster["steps"] == ["store"] and cluster["introduced_in"] == "v2"
    assert "column order_<n>_total is missing" in cluster["signature"]  # the varying part taken out
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["fetch"]["runs"] == 4 and steps["store"]["failure_rate"] == 0.5
    assert steps["fetch"]["p50_ms"] is not None and steps["fetch"]["queue_p50_ms"] is not None
    served = insights(api.as_role("viewer"), path, "--since", "1h")
    assert served["clusters"] == report["clusters"] and served["steps"] == report["steps"]
    text = noetl("insights", path, "--since", "1h")
    assert text.returncode == 0 and "failure clusters:" in text.stdout and "first in v2" in text.stdout
    refused = noetl("insights", "--since", "last week")
    assert refused.returncode == 2 and "neither a span nor a time" in refused.stderr
