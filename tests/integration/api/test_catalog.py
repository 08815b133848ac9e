"""Registering playbooks (YAML or JSON bodies), located errors for invalid ones, and reading the catalog."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.integration.api.helpers import assert_problem, playbook, unique

pytestmark = pytest.mark.anyio

BODY = """\
workflow:
  - step: a
    tool: {kind: noop}
"""


async def test_registering_a_path_twice_as_yaml_then_as_base64_json_gives_versions_1_and_2(
        admin: httpx.AsyncClient) -> None:
    name = unique("cat")
    text = playbook(name, BODY)
    first = await admin.post("/api/catalog/register", content=text, headers={"Content-Type": "text/yaml"})
    assert first.status_code == 201, first.text
    assert first.json() == {"path": name, "version": 1, "warnings": [], "triggers": []}
    second = await admin.post("/api/catalog/register",
                              json={"content": base64.b64encode(text.encode()).decode()})
    assert second.status_code == 201, second.text
    assert second.json()["version"] == 2
    third = await admin.post("/api/catalog/register", json={"content_text": text})
    assert third.json()["version"] == 3


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml", "text/yaml",
                                          "text/plain", "text/plain; charset=utf-8"])
async def test_every_yaml_content_type_registers(admin: httpx.AsyncClient, content_type: str) -> None:
    name = unique("cat_type")
    response = await admin.post("/api/catalog/register", content=playbook(name, BODY),
                                headers={"Content-Type": content_type})
    assert response.status_code == 201, response.text
    assert response.json()["path"] == name


async def test_an_invalid_playbook_is_answered_422_with_each_error_located(admin: httpx.AsyncClient) -> None:
    text = playbook(unique("bad"), """\
        workflow:
          - step: a
            tool: {kind: noop}
            next: {arcs: [{step: nowhere}]}
          - step: b
            tool: {kind: teleport}
        """)
    response = await admin.post("/api/catalog/register", content=text,
                                headers={"Content-Type": "application/yaml"})
    doc = assert_problem(response, 422, "playbook_invalid")
    errors = doc["errors"]
    assert len(errors) >= 2
    for error in errors:
        assert set(error) == {"line", "column", "code", "path", "message"}
        assert error["line"] >= 4 and error["column"] >= 1
    by_line = {e["line"]: e for e in errors}
    assert "nowhere" in by_line[7]["message"]
    assert "teleport" in by_line[9]["message"]


async def test_yaml_that_does_not_parse_is_answered_400_with_the_syntax_error_located(
        admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/catalog/register", content="workflow: [\n  - {step: a\n",
                                headers={"Content-Type": "application/yaml"})
    doc = assert_problem(response, 400, "malformed_yaml")
    assert doc["errors"][0]["code"] == "yaml_syntax" and doc["errors"][0]["line"] >= 1


async def test_a_registration_whose_base64_is_broken_is_answered_400(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/catalog/register", json={"content": "not base64!!"})
    doc = assert_problem(response, 400, "malformed_body")
    assert "base64" in doc["detail"]


@pytest.mark.parametrize("body", [{}, {"content": "eA==", "content_text": "x"}, {"text": "x"},
                                  {"content_text": 5}])
async def test_a_json_registration_needs_exactly_one_of_content_and_content_text(
        admin: httpx.AsyncClient, body: dict) -> None:
    response = await admin.post("/api/catalog/register", json=body)
    doc = assert_problem(response, 422, "invalid_request")
    assert doc["errors"] and {"loc", "msg", "type"} == set(doc["errors"][0])


async def test_list_get_versions_and_delete_read_what_was_registered(admin: httpx.AsyncClient) -> None:
    prefix = unique("lib")
    texts = {}
    for leaf in ("alpha", "beta"):
        name = f"{prefix}_{leaf}"
        texts[name] = playbook(name, BODY).replace(f"metadata: {{name: {name}}}",
                                                    f"metadata: {{name: {name}, description: d {leaf}, "
                                                    f"tags: [t1], labels: {{team: x}}}}")
        for _ in range(2):
            assert (await admin.post("/api/catalog/register", content=texts[name],
                                     headers={"Content-Type": "application/yaml"})).status_code == 201
    listed = (await admin.get("/api/catalog", params={"prefix": prefix})).json()["items"]
    assert [(i["path"], i["version"]) for i in listed] == [(f"{prefix}_alpha", 2), (f"{prefix}_beta", 2)]
    assert listed[0]["description"] == "d alpha" and listed[0]["tags"] == ["t1"]
    assert listed[0]["labels"] == {"team": "x"} and listed[0]["name"] == f"{prefix}_alpha"
    assert listed[0]["created_at"]

    alpha = f"{prefix}_alpha"
    latest = (await admin.get("/api/catalog/playbook", params={"path": alpha})).json()
    assert latest["version"] == 2 and latest["content"] == texts[alpha]
    first = (await admin.get("/api/catalog/playbook", params={"path": alpha, "version": 1})).json()
    assert first["version"] == 1 and first["content"] == texts[alpha]
    versions = (await admin.get("/api/catalog/versions", params={"path": alpha})).json()["items"]
    assert [v["version"] for v in versions] == [1, 2]

    one = await admin.delete("/api/catalog/playbook", params={"path": alpha, "version": 1})
    assert one.status_code == 200 and one.json() == {"deleted": 1}
    assert [v["version"] for v in (await admin.get("/api/catalog/versions",
                                                   params={"path": alpha})).json()["items"]] == [2]
    assert (await admin.delete("/api/catalog/playbook", params={"path": f"{prefix}_beta"})).json() == \
        {"deleted": 2}
    listed = (await admin.get("/api/catalog", params={"prefix": prefix})).json()["items"]
    assert [i["path"] for i in listed] == [alpha]


@pytest.mark.parametrize(("method", "url", "params"), [
    ("GET", "/api/catalog/playbook", {"path": "no/such/path"}),
    ("GET", "/api/catalog/playbook", {"path": "no/such/path", "version": 3}),
    ("GET", "/api/catalog/versions", {"path": "no/such/path"}),
    ("DELETE", "/api/catalog/playbook", {"path": "no/such/path"}),
    ("DELETE", "/api/catalog/playbook", {"path": "no/such/path", "version": 1}),
])
async def test_an_unknown_path_or_version_is_answered_404(admin: httpx.AsyncClient, method: str, url: str,
                                                          params: dict) -> None:
    doc = assert_problem(await admin.request(method, url, params=params), 404, "not_found")
    assert "no/such/path" in doc["detail"]


async def test_an_unknown_version_of_a_known_path_is_answered_404(admin: httpx.AsyncClient) -> None:
    name = unique("cat_v")
    await admin.post("/api/catalog/register", content=playbook(name, BODY),
                     headers={"Content-Type": "application/yaml"})
    response = await admin.get("/api/catalog/playbook", params={"path": name, "version": 7})
    assert_problem(response, 404, "not_found")
