"""The nats tool on the deployment's own NATS, and contracts (`assert`), as a user runs them: playbooks
through the real stack with `noetl run --json`, and `noetl why` on a breached contract."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from tests.e2e.helpers import Doc, Noetl, step_of


def test_a_playbook_puts_gets_and_publishes_on_the_deployments_nats(
        run_json: Callable[..., tuple[int, Doc]], playbook: Callable[..., str]) -> None:
    bucket = f"e2e_{uuid.uuid4().hex[:8]}"
    code, doc = run_json(playbook(f"""\
        workload: {{bucket: {bucket}, customer: {{id: 7, tier: gold}}}}
        workflow:
          - step: put
            tool: {{kind: nats, operation: kv_put, bucket: "{{{{ workload.bucket }}}}", key: customer.7,
                    value: "{{{{ workload.customer }}}}", assert: {{returns: [revision]}}}}
            next: get
          - step: get
            tool: {{kind: nats, operation: kv_get, bucket: "{{{{ workload.bucket }}}}", key: customer.7}}
            next: announce
          - step: announce
            tool:
              kind: nats
              operation: publish
              subject: "e2e.customers.{{{{ get.value.id }}}}"
              data: {{tier: "{{{{ get.value.tier }}}}", revision: "{{{{ get.revision }}}}"}}
              headers: {{X-Source: noetl}}
        """))
    assert code == 0, doc
    assert doc["status"] == "completed"
    put = step_of(doc, "put")["result"]
    assert put["bucket"] == bucket and put["key"] == "customer.7" and put["revision"] >= 1
    got = step_of(doc, "get")["result"]
    assert got == {"bucket": bucket, "key": "customer.7", "value": {"id": 7, "tier": "gold"},
                   "revision": put["revision"]}
    assert step_of(doc, "announce")["result"] == {"subject": "e2e.customers.7"}  # no stream takes it


def test_a_breached_contract_fails_the_run_and_why_names_the_missing_field(
        noetl: Noetl, run_json: Callable[..., tuple[int, Doc]], playbook: Callable[..., str]) -> None:
    code, doc = run_json(playbook("""\
        workbook:
          - name: score
            tool: {kind: python, code: "result = {'total': customer_id * 2}"}
            assert: {expects: [customer_id], returns: [score]}
        workflow:
          - step: rate
            input: {customer_id: 21}
            tool: {kind: workbook, name: score}
        """))
    assert code != 0 and doc["status"] == "failed"
    error = step_of(doc, "rate")["error"]
    assert error["kind"] == "contract" and error["retryable"] is False
    assert "workbook task 'score'" in error["message"] and "result lacks `score`" in error["message"]
    why = noetl("why", doc["execution_id"], "--json", "--no-llm", "--no-similar")
    assert why.returncode == 0, why.stderr
    diagnosis = json.loads(why.stdout)
    assert diagnosis["root_cause_type"] == "contract" and diagnosis["root_cause_step"] == "rate"
    assert "Workbook task 'score''s result lacks `score`" in diagnosis["suggested_fixes"][0]["description"]
