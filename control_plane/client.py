"""The control plane's HTTP client: one method per endpoint of docs/api.md, errors as ClientError.

    async with NoetlClient("http://127.0.0.1:8082", token) as client:
        registered = await client.register(text)
        started = await client.execute(registered["path"])
        async for event in client.stream(started["execution_id"]):
            ...

Every method returns the JSON document the endpoint answers with (a dict), `metrics()` the Prometheus
text. An answer that is not 2xx raises ClientError with the problem+json fields; a server that cannot be
reached raises ServerUnreachableError naming the URL. The token is sent, never logged nor shown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from control_plane.errors import ControlPlaneError

__all__ = ["ClientError", "NoetlClient", "ServerUnreachableError"]

TERMINAL_EVENTS = ("execution.completed", "execution.failed", "execution.cancelled")
_STREAM_RECONNECTS = 5  # a stream cut before the terminal event resumes after the last seq this often
_FIX_URL = "check NOETL_SERVER_URL, or start the server: `noetl server start` or `noetl dev up`"


class ClientError(ControlPlaneError):
    """The server answered with an error (a problem+json document): its status and fields.

    `errors` holds the located errors of a playbook that does not validate ({line, column, code, path,
    message}) or the fields of a malformed request ({loc, msg, type}).
    """

    code = "client_error"

    def __init__(self, status: int, *, title: str, detail: str, code: str | None = None,
                 where: str | None = None, fix: str | None = None,
                 errors: list[dict[str, Any]] | None = None, url: str = "") -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        self.url = url
        self.detail_doc: dict[str, Any] | None = None  # the body as the server sent it
        message = f"{status} {title}: {detail}" if detail and detail != title else f"{status} {title}"
        super().__init__(message, code=code or f"http_{status}", where=where, fix=fix)


class ServerUnreachableError(ControlPlaneError):
    """No answer from the server: nothing listens at the URL, or it did not answer in time.
    `details`: `url` (the server's), `reason` (in a few words) and `reached` (False when no connection
    was made, so the request surely had no effect; True when it was sent and no answer came)."""

    code = "server_unreachable"


class NoetlClient:
    """An async client of one NoETL server. Use `async with`, or call `await client.close()`."""

    def __init__(self, base_url: str, token: str | None, *, timeout_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        headers = {"Accept": "application/json", "User-Agent": "noetl-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                       timeout=httpx.Timeout(timeout_s), transport=transport)

    def __repr__(self) -> str:  # never the token
        return f"NoetlClient({self.base_url!r})"

    async def __aenter__(self) -> NoetlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ plumbing
    async def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    json_body: Any = None, content: str | None = None,
                    content_type: str | None = None) -> httpx.Response:
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        headers = {"Content-Type": content_type} if content_type else None
        try:
            response = await self._http.request(method, path, params=query, json=json_body,
                                                content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise ServerUnreachableError(
                f"the NoETL server at {self.base_url} did not answer {method} {path} within "
                f"{self.timeout_s:g} s", where="NOETL_SERVER_URL", fix=_FIX_URL, url=self.base_url,
                reason=f"no answer within {self.timeout_s:g} s", reached=_reached(exc)) from None
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"cannot reach the NoETL server at {self.base_url} ({_reason(exc)})",
                where="NOETL_SERVER_URL", fix=_FIX_URL, url=self.base_url, reason=_reason(exc),
                reached=_reached(exc)) from None
        if response.is_error:
            raise _problem(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            doc = response.json()
        except ValueError:
            raise ClientError(response.status_code, title="not JSON",
                              detail=f"{path} answered {response.headers.get('content-type')!r}, "
                                     "not a JSON document", where=self.base_url,
                              fix="check that NOETL_SERVER_URL points at a NoETL server") from None
        return doc if isinstance(doc, dict) else {"items": doc}

    # ------------------------------------------------------------------ health, metrics
    async def health(self) -> dict[str, Any]:
        """`{"status": "ok"|"degraded", "postgres", "nats"}`; a degraded server's answer too (503)."""
        try:
            return await self._json("GET", "/health")
        except ClientError as exc:
            doc = exc.detail_doc
            if exc.status == 503 and doc is not None and doc.get("status") in ("ok", "degraded"):
                return doc
            raise

    async def metrics(self) -> str:
        """The Prometheus text exposition."""
        return (await self._send("GET", "/metrics")).text

    async def openapi(self) -> dict[str, Any]:
        return await self._json("GET", "/openapi.json")

    # ------------------------------------------------------------------ catalog
    async def register(self, text: str) -> dict[str, Any]:
        """Register a playbook (its YAML): `{"path", "version", "warnings"}`; 422 with located errors."""
        return await self._json("POST", "/api/catalog/register", content=text,
                                content_type="application/yaml")

    async def catalog_list(self, prefix: str | None = None) -> dict[str, Any]:
        return await self._json("GET", "/api/catalog", params={"prefix": prefix})

    async def catalog_get(self, path: str, version: int | None = None) -> dict[str, Any]:
        return await self._json("GET", "/api/catalog/playbook", params={"path": path, "version": version})

    async def catalog_versions(self, path: str) -> dict[str, Any]:
        return await self._json("GET", "/api/catalog/versions", params={"path": path})

    async def catalog_delete(self, path: str, version: int | None = None) -> dict[str, Any]:
        return await self._json("DELETE", "/api/catalog/playbook", params={"path": path, "version": version})

    # ------------------------------------------------------------------ executions
    async def execute(self, path: str, version: int | None = None, payload: Mapping[str, Any] | None = None,
                      merge: bool | None = None) -> dict[str, Any]:
        """Start an execution: `{"execution_id", "path", "version", "status"}`."""
        body: dict[str, Any] = {"path": path}
        if version is not None:
            body["version"] = version
        if payload is not None:
            body["payload"] = dict(payload)
        if merge is not None:
            body["merge"] = merge
        return await self._json("POST", "/api/execute", json_body=body)

    async def executions(self, *, path: str | None = None, status: str | None = None,
                         since: datetime | str | None = None, until: datetime | str | None = None,
                         parent: str | None = None, limit: int = 50,
                         cursor: str | None = None) -> dict[str, Any]:
        """A page, newest first: `{"items", "next_cursor"}`."""
        return await self._json("GET", "/api/executions", params={
            "path": path, "status": status, "since": since, "until": until, "parent": parent,
            "limit": limit, "cursor": cursor})

    async def execution(self, execution_id: str) -> dict[str, Any]:
        """The execution with its per-step state (`status`, `result`, `error`, `steps`)."""
        return await self._json("GET", f"/api/executions/{_segment(execution_id)}")

    async def events(self, execution_id: str, after_seq: int = 0, limit: int = 100) -> dict[str, Any]:
        """A page of events with seq > after_seq: `{"items", "next_after_seq"}`."""
        return await self._json("GET", f"/api/executions/{_segment(execution_id)}/events",
                                params={"after_seq": after_seq, "limit": limit})

    async def all_events(self, execution_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """Every stored event, page after page."""
        items: list[dict[str, Any]] = []
        cursor: int | None = after_seq
        while cursor is not None:
            page = await self.events(execution_id, after_seq=cursor, limit=1000)
            items.extend(page.get("items") or [])
            nxt = page.get("next_after_seq")
            cursor = int(nxt) if nxt is not None and nxt != cursor else None
        return items

    async def stream(self, execution_id: str, after_seq: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The execution's events as the server stores them (Server-Sent Events), ending after the
        terminal event. A connection cut before that resumes after the last event received."""
        url = f"/api/executions/{_segment(execution_id)}/stream"
        seq = after_seq
        cuts = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if seq:
                headers["Last-Event-ID"] = str(seq)
            received = False
            try:
                async with self._http.stream("GET", url, params={"after_seq": seq}, headers=headers,
                                             timeout=httpx.Timeout(self.timeout_s, read=None)) as response:
                    if response.is_error:
                        await response.aread()
                        raise _problem(response)
                    async for event in _sse_events(response.aiter_lines()):
                        received = True
                        seq = max(seq, int(event.get("seq") or seq))
                        yield event
                        if event.get("type") in TERMINAL_EVENTS:
                            return
            except httpx.TransportError as exc:
                if not received and cuts == 0:
                    raise ServerUnreachableError(
                        f"cannot reach the NoETL server at {self.base_url} ({_reason(exc)})",
                        where="NOETL_SERVER_URL", fix=_FIX_URL, url=self.base_url, reason=_reason(exc),
                        reached=_reached(exc)) from None
            cuts = 0 if received else cuts + 1
            if cuts:
                await asyncio.sleep(0.1 * cuts)  # a server that ends streams at once: back off a little
            if cuts >= _STREAM_RECONNECTS:
                raise ServerUnreachableError(
                    f"the event stream of execution '{execution_id}' from {self.base_url} ended "
                    f"{cuts} times without its terminal event", where="NOETL_SERVER_URL",
                    fix="check the server's log; `noetl status ID` reads the execution's state",
                    url=self.base_url, reason="the event stream ended early", reached=True)

    async def cancel(self, execution_id: str) -> dict[str, Any]:
        """`{"execution_id", "status": "cancelling"}`; 409 for an execution that already ended."""
        return await self._json("POST", f"/api/executions/{_segment(execution_id)}/cancel")

    # ------------------------------------------------------------------ credentials
    async def credential_set(self, name: str, type: str, data: Mapping[str, Any],
                             description: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": type, "data": dict(data)}
        if description is not None:
            body["description"] = description
        return await self._json("PUT", f"/api/credentials/{_segment(name)}", json_body=body)

    async def credential_list(self) -> dict[str, Any]:
        return await self._json("GET", "/api/credentials")

    async def credential_info(self, name: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/credentials/{_segment(name)}")

    async def credential_delete(self, name: str) -> None:
        await self._send("DELETE", f"/api/credentials/{_segment(name)}")

    # ------------------------------------------------------------------ tokens
    async def token_create(self, name: str, role: str) -> dict[str, Any]:
        """`{"id", "name", "role", "created_at", "token"}`: the only time the token is shown."""
        return await self._json("POST", "/api/tokens", json_body={"name": name, "role": role})

    async def token_list(self) -> dict[str, Any]:
        return await self._json("GET", "/api/tokens")

    async def token_revoke(self, token_id: str) -> None:
        await self._send("DELETE", f"/api/tokens/{_segment(token_id)}")

    # ------------------------------------------------------------------ triggers (docs/triggers.md)
    async def trigger_create(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"id", "kind", …, "secret"}`: a webhook's secret is shown in this answer only."""
        return await self._json("POST", "/api/triggers", json_body=body)

    async def trigger_list(self, path: str | None = None) -> dict[str, Any]:
        return await self._json("GET", "/api/triggers", params={"path": path})

    async def trigger_get(self, trigger_id: str, limit: int = 20) -> dict[str, Any]:
        """The trigger and its newest `limit` firings."""
        return await self._json("GET", f"/api/triggers/{_segment(trigger_id)}", params={"limit": limit})

    async def trigger_events(self, trigger_id: str, limit: int = 100) -> dict[str, Any]:
        return await self._json("GET", f"/api/triggers/{_segment(trigger_id)}/events",
                                params={"limit": limit})

    async def trigger_pause(self, trigger_id: str, paused: bool = True) -> dict[str, Any]:
        action = "pause" if paused else "resume"
        return await self._json("POST", f"/api/triggers/{_segment(trigger_id)}/{action}")

    async def trigger_delete(self, trigger_id: str) -> None:
        await self._send("DELETE", f"/api/triggers/{_segment(trigger_id)}")

    # ------------------------------------------------------------------ diagnosis and similar failures
    async def diagnosis(self, execution_id: str) -> dict[str, Any]:
        """Why the execution failed (the `Diagnosis`); 409 while it runs."""
        return await self._json("GET", f"/api/executions/{_segment(execution_id)}/diagnosis")

    async def similar(self, execution_id: str, step: str | None = None, limit: int = 5) -> dict[str, Any]:
        """`{"items": [...]}`: past failures nearest to this execution's, best first."""
        return await self._json("GET", f"/api/executions/{_segment(execution_id)}/similar",
                                params={"step": step, "limit": limit})

    async def search(self, text: str, limit: int = 10) -> dict[str, Any]:
        """`{"items": [...]}`: past failures nearest to a free text, best first."""
        return await self._json("GET", "/api/search", params={"q": text, "limit": limit})

    async def insights(self, path: str | None = None, since: str | None = None,
                       limit: int = 20) -> dict[str, Any]:
        """Step durations and trends, bottlenecks, anomalies and failure clusters (docs/insights.md)."""
        return await self._json("GET", "/api/insights", params={"path": path, "since": since, "limit": limit})

    # ------------------------------------------------------------------ proposals and policies
    async def proposals(self, *, state: str | None = None, path: str | None = None, step: str | None = None,
                        limit: int = 100) -> dict[str, Any]:
        """`{"items": [proposals]}`, newest first; `state` may list several, separated by commas."""
        return await self._json("GET", "/api/proposals", params={"state": state, "path": path, "step": step,
                                                                 "limit": limit})

    async def proposal(self, proposal_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/proposals/{_segment(proposal_id)}")

    async def chat(self, message: str, conversation_id: str | None = None) -> dict[str, Any]:
        """Ask the chat (POST /api/chat): the answer, what it resolved, the events it cites."""
        body: dict[str, Any] = {"message": message}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        return await self._json("POST", "/api/chat", json_body=body)

    async def chat_history(self, conversation_id: str) -> dict[str, Any]:
        """One of this token's conversations, every question with its answer (GET /api/chat/{id})."""
        return await self._json("GET", f"/api/chat/{_segment(conversation_id)}")

    async def propose(self, draft: Mapping[str, Any]) -> dict[str, Any]:
        """Propose a change (`{"target": {"path", "step"}, "change": {...}, "rationale"}`); 409 when the
        guardrails refuse it."""
        return await self._json("POST", "/api/proposals", json_body=dict(draft))

    async def proposal_decide(self, proposal_id: str, decision: str, reason: str) -> dict[str, Any]:
        """`decision` is approve, reject or rollback (approver; never one's own proposal)."""
        return await self._json("POST", f"/api/proposals/{_segment(proposal_id)}/{decision}",
                                json_body={"reason": reason})

    # ------------------------------------------------------------------ the web console
    async def ui_link(self, path: str | None = None) -> dict[str, Any]:
        """A one-time sign-in link to the web console as this client's token: `{"url", "expires_at"}`
        (`path`: a console path such as /ui/proposals to land on)."""
        return await self._json("POST", "/api/ui/links", json_body={"path": path} if path else {})

    async def policies(self, path: str, step: str | None = None) -> dict[str, Any]:
        """The active overlay of the path's steps and every version of it."""
        return await self._json("GET", "/api/policies", params={"path": path, "step": step})


# ---------------------------------------------------------------------- helpers
def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _segment(value: str) -> str:
    """One path segment: nothing in it can reach another route."""
    from urllib.parse import quote

    return quote(str(value), safe="")


def _reached(exc: httpx.TransportError) -> bool:
    """Whether the request may have reached the server (anything but a connection never made)."""
    return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _problem(response: httpx.Response) -> ClientError:
    """A problem+json answer (or whatever else the server sent) as a ClientError."""
    doc: Any = None
    try:
        doc = response.json()
    except ValueError:
        doc = None
    status = response.status_code
    url = str(response.request.url.copy_with(query=None)) if response.request else ""
    if isinstance(doc, dict) and ("title" in doc or "detail" in doc or "code" in doc):
        error = ClientError(status, title=str(doc.get("title") or response.reason_phrase),
                            detail=str(doc.get("detail") or ""), code=doc.get("code"),
                            where=doc.get("where"), fix=doc.get("fix"),
                            errors=doc.get("errors") if isinstance(doc.get("errors"), list) else None,
                            url=url)
    elif isinstance(doc, dict) and isinstance(doc.get("detail"), list):  # a bare validation answer
        error = ClientError(status, title=response.reason_phrase, detail="the request does not match "
                            "its schema", errors=doc["detail"], url=url)
    else:
        text = response.text.strip().splitlines()[0][:300] if response.text.strip() else ""
        error = ClientError(status, title=response.reason_phrase or "error", detail=text, url=url,
                            where=url or None)
    error.detail_doc = doc if isinstance(doc, dict) else None
    return error


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """Server-Sent Events -> the JSON of each event's data (comments and keep-alives skipped)."""
    data: list[str] = []
    event_type: str | None = None
    event_id: str | None = None
    async for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                event = json.loads("\n".join(data))
                if isinstance(event, dict):
                    if event_type and "type" not in event:
                        event["type"] = event_type
                    if event_id and event.get("seq") is None and event_id.isdigit():
                        event["seq"] = int(event_id)
                    yield event
            data, event_type, event_id = [], None, None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event_type = value
        elif field == "id":
            event_id = value
