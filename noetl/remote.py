"""The REST backend: the CLI's operations through a NoETL server's API (control_plane.client).

Used when NOETL_SERVER_URL is set (noetl.backend). The server's refusals become one line on stderr and
the CLI's exit codes (docs/runtime.md): 2 a request the server refused as invalid (4xx: unknown id,
invalid playbook, conflict), 3 the token missing, unknown or too weak (401, 403), or the server unable
(5xx). A server that cannot be reached at all raises ServerUnreachableError (exit 3, noetl.cli).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from agents.diagnosis.model import Diagnosis
from control_plane.client import ClientError, NoetlClient
from engine.protocol.events import Event
from noetl.follow import ENDED, follow_remote
from noetl.outage import Rider
from noetl.progress import Progress
from noetl.refusal import Refusal

T = TypeVar("T")

EXIT_INVALID, EXIT_UNAVAILABLE = 2, 3


def exit_code(error: ClientError) -> int:
    if error.status in (401, 403) or error.status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_INVALID


def located(errors: list[dict[str, Any]], file: str) -> list[str]:
    """A playbook's located errors as `noetl validate` prints them: FILE:LINE:COL PATH: MESSAGE."""
    lines = []
    for item in errors:
        if "line" in item:
            where = f"{file}:{item.get('line')}:{item.get('column')} {item.get('path') or '(document)'}"
            lines.append(f"{where}: {item.get('message')}")
        else:  # a malformed request: {loc, msg, type}
            loc = ".".join(str(part) for part in item.get("loc") or [])
            lines.append(f"{loc}: {item.get('msg')}")
    return lines


def _located_warning(item: dict[str, Any], file: str) -> str:
    return (f"{file}:{item.get('line')}:{item.get('column')} {item.get('path') or '(document)'}: "
            f"warning: {item.get('message')}")


def _as_event(item: dict[str, Any]) -> Event | None:
    try:
        return Event.model_validate(item)
    except ValidationError:
        return None


class RestBackend:
    """The operations of noetl.backend.Backend over one NoetlClient, opened on the first call (so that a
    command that never calls the server needs no token)."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self._client: NoetlClient | None = None

    async def __aenter__(self) -> RestBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _ask(self, action: Callable[[NoetlClient], Awaitable[T]]) -> T:
        """`action(client)`; the server's refusal (ClientError) becomes the CLI's."""
        if self._client is None:
            if self.token is None:
                raise Refusal([f"error: NOETL_SERVER_URL is {self.url} but NOETL_TOKEN is not set (create a "
                               "token with `noetl token create --role operator --name NAME` on the server's "
                               "machine, or take the admin token `noetl dev up` prints)"], EXIT_UNAVAILABLE)
            self._client = NoetlClient(self.url, self.token)
        try:
            return await action(self._client)
        except ClientError as exc:
            raise Refusal([f"error: {exc}"], exit_code(exc)) from None

    # ------------------------------------------------------------------ catalog
    async def register(self, text: str, file: str) -> dict[str, Any]:
        async def post(client: NoetlClient) -> dict[str, Any]:
            try:
                return await client.register(text)
            except ClientError as exc:
                if exc.status == 422 and exc.errors:
                    raise Refusal(located(exc.errors, file), EXIT_INVALID) from None
                raise

        out = await self._ask(post)
        out["warnings"] = [w if isinstance(w, str) else _located_warning(w, file)
                           for w in out.get("warnings") or []]
        return out

    async def catalog_list(self, prefix: str | None) -> list[dict[str, Any]]:
        return list((await self._ask(lambda client: client.catalog_list(prefix))).get("items") or [])

    async def catalog_get(self, path: str, version: int | None) -> dict[str, Any]:
        return await self._ask(lambda client: client.catalog_get(path, version))

    # ------------------------------------------------------------------ credentials
    async def credential_set(self, name: str, type_: str, fields: dict[str, Any],
                             description: str | None) -> dict[str, Any]:
        out = await self._ask(lambda client: client.credential_set(name, type_, fields, description))
        return {"name": out["name"], "type": out["type"]}

    async def credential_list(self) -> list[dict[str, Any]]:
        items = (await self._ask(lambda client: client.credential_list())).get("items") or []
        return [{"name": i["name"], "type": i["type"], "description": i.get("description"),
                 "updated_at": i.get("updated_at")} for i in items]

    async def credential_delete(self, name: str) -> None:
        await self._ask(lambda client: client.credential_delete(name))

    # ------------------------------------------------------------------ tokens
    async def token_create(self, name: str, role: str) -> dict[str, Any]:
        return await self._ask(lambda client: client.token_create(name, role))

    async def token_list(self) -> list[dict[str, Any]]:
        return list((await self._ask(lambda client: client.token_list())).get("items") or [])

    async def token_revoke(self, token_id: str) -> None:
        await self._ask(lambda client: client.token_revoke(token_id))

    # ------------------------------------------------------------------ triggers
    async def trigger_create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._ask(lambda client: client.trigger_create(body))

    async def trigger_list(self, path: str | None) -> list[dict[str, Any]]:
        return list((await self._ask(lambda client: client.trigger_list(path))).get("items") or [])

    async def trigger_show(self, trigger_id: str, limit: int) -> dict[str, Any]:
        return await self._ask(lambda client: client.trigger_get(trigger_id, limit))

    async def trigger_set_paused(self, trigger_id: str, paused: bool) -> dict[str, Any]:
        return await self._ask(lambda client: client.trigger_pause(trigger_id, paused))

    async def trigger_delete(self, trigger_id: str) -> None:
        await self._ask(lambda client: client.trigger_delete(trigger_id))

    # ------------------------------------------------------------------ executions
    async def execution(self, execution_id: str, rider: Rider) -> dict[str, Any]:
        return await self._ask(lambda client: rider(lambda: client.execution(execution_id)))

    async def events(self, execution_id: str, rider: Rider) -> list[dict[str, Any]]:
        return await self._ask(lambda client: rider(lambda: client.all_events(execution_id)))

    async def cancel(self, execution_id: str) -> None:
        await self._ask(lambda client: client.cancel(execution_id))

    async def execute(self, path: str, version: int | None, payload: dict[str, Any] | None, *, merge: bool,
                      wait: bool, quiet: bool, timeout: float | None, rider: Rider
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        async def run(client: NoetlClient) -> tuple[dict[str, Any], dict[str, Any] | None]:
            # started again only when the server surely never saw it: the API makes a new execution each time
            started = await rider(lambda: client.execute(path, version, payload,
                                                         merge=True if merge else None), repeatable=False)
            if not wait:
                return started, None
            execution_id = str(started["execution_id"])
            progress = Progress(execution_id, quiet=quiet)

            def on_item(item: dict[str, Any]) -> None:
                event = _as_event(item)
                if event is not None:
                    progress.update(event)

            with progress:
                summary = await follow_remote(client, rider, execution_id, timeout, on_item)
            if summary.get("status") in ENDED:
                progress.finish(summary)
            return started, summary

        return await self._ask(run)

    # ------------------------------------------------------------------ proposals and policies
    async def proposals(self, state: str | None, path: str | None, limit: int) -> list[dict[str, Any]]:
        items = await self._ask(lambda client: client.proposals(state=state, path=path, limit=limit))
        return list(items.get("items") or [])

    async def proposal(self, proposal_id: str) -> dict[str, Any]:
        return await self._ask(lambda client: client.proposal(proposal_id))

    async def propose(self, draft: dict[str, Any]) -> dict[str, Any]:
        return await self._ask(lambda client: client.propose(draft))

    async def proposal_decide(self, proposal_id: str, decision: str, reason: str) -> dict[str, Any]:
        return await self._ask(lambda client: client.proposal_decide(proposal_id, decision, reason))

    async def policies(self, path: str, step: str | None) -> dict[str, Any]:
        return await self._ask(lambda client: client.policies(path, step))

    async def watch_proposals(self, once: bool, diagnose: bool, poll: float, measure_after: int) -> list[str]:
        raise Refusal(["error: `noetl proposals watch` runs beside the store (unset NOETL_SERVER_URL on the "
                       "server's machine)"], EXIT_INVALID)

    # ------------------------------------------------------------------ diagnosis and similar failures
    async def diagnose(self, execution_id: str, *, use_llm: bool, use_similar: bool) -> Diagnosis:
        return Diagnosis.model_validate(await self._ask(lambda client: client.diagnosis(execution_id)))

    async def ask(self, message: str, conversation_id: str | None, *, use_similar: bool) -> dict[str, Any]:
        return await self._ask(lambda client: client.chat(message, conversation_id))

    async def similar(self, execution_id: str, step: str | None, limit: int) -> list[dict[str, Any]]:
        found = await self._ask(lambda client: client.similar(execution_id, step=step, limit=limit))
        return list(found.get("items") or [])

    async def search(self, text: str, limit: int) -> list[dict[str, Any]]:
        return list((await self._ask(lambda client: client.search(text, limit=limit))).get("items") or [])

    async def insights(self, path: str | None, since: str | None, limit: int) -> dict[str, Any]:
        return await self._ask(lambda client: client.insights(path, since, limit))
