"""The local backend: the CLI's operations over this machine's store, bus and services, in this process.

Used when NOETL_SERVER_URL is not set (noetl.backend). Each operation opens what it needs (the store,
or a stack that only submits when `noetl dev up` runs the executions) and closes it again; what the
services refuse becomes the CLI's words and exit code (a Refusal), as each command has always said it.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from agents.diagnosis.model import Diagnosis
from control_plane.errors import (
    ConflictError,
    ControlPlaneError,
    ForbiddenError,
    InvalidArgumentError,
    NotFoundError,
)
from control_plane.schemas.triggers import TriggerCreate
from control_plane.services.auth import AuthService, TokenInfo
from control_plane.services.catalog import CatalogService, PlaybookInvalidError
from control_plane.services.executions import ExecutionService
from control_plane.services.policies import PolicyService, PolicySettings
from control_plane.services.triggers import TriggerService, webhook_path
from control_plane.stack import Stack, resolve_ref
from control_plane.store import Store
from engine.protocol.ids import new_execution_id
from engine.runtime.summary import summarize
from noetl.devstack import running_dev_stack
from noetl.follow import ENDED, follow_local
from noetl.llm_settings import llm_settings
from noetl.local_store import LocalEmbeddings, open_local_store, similar_finder, store_dsn
from noetl.outage import Rider
from noetl.progress import Progress
from noetl.refusal import Refusal
from noetl.session import Session
from noetl.settings import stack_config
from policies.model import Actor

if TYPE_CHECKING:
    from noetl.remote import RestBackend

T = TypeVar("T")

EXIT_INVALID, EXIT_UNAVAILABLE = 2, 3
READ_CONNECT_S = 3.0  # how long a read of an execution waits for Postgres before it counts as an outage


def local_actor() -> Actor:
    """Who acts on proposals from this machine: the local user (`local:<user>`)."""
    user = getpass.getuser() or "unknown"
    return Actor(id=f"local:{user}", name=user)


def _trigger_request(body: dict[str, Any]) -> TriggerCreate:
    from pydantic import ValidationError

    try:
        return TriggerCreate.model_validate(body)
    except ValidationError as exc:
        lines = [f"error: {'.'.join(str(p) for p in e['loc']) or 'trigger'}: {e['msg']}"
                 for e in exc.errors(include_input=False)]
        raise Refusal(lines, EXIT_INVALID) from None


def _refused(exc: BaseException, code: int = EXIT_INVALID) -> Refusal:
    return Refusal([f"error: {exc}"], code)


def _not_in_log(execution_id: str) -> Refusal:
    return Refusal([f"no execution '{execution_id}' in this NoETL's event log"], EXIT_INVALID)


@asynccontextmanager
async def _store(**options: Any) -> AsyncIterator[Store]:
    store = await open_local_store(**options)
    try:
        yield store
    finally:
        await store.close()


def _summary(item: Any) -> dict[str, Any]:
    return {"path": item.path, "version": item.version, "name": item.name, "description": item.description,
            "tags": item.tags, "labels": item.labels, "created_at": item.created_at.isoformat()}


def _token(info: TokenInfo) -> dict[str, Any]:
    return {"id": info.token_id, "name": info.name, "role": info.role,
            "created_at": info.created_at.isoformat(),
            "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None}


def _dump(value: Any) -> dict[str, Any]:
    return value.model_dump(mode="json", by_alias=True) if hasattr(value, "model_dump") else dict(value)


async def _read(execution_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An execution's summary (its status as the row says until it ended) and its events, as JSON."""
    async with _store(connect_timeout_s=READ_CONNECT_S) as store:
        execution = await store.executions.get(execution_id)
        events = await store.events.events(execution_id)
    summary = summarize(execution_id, events, resolve_ref)
    if summary["status"] not in ENDED:  # pending (not picked up yet) or running: as the row says
        summary["status"] = execution.status
    return summary, [e.model_dump(mode="json") for e in events]


def _stack_store(stack: Stack) -> Store:
    assert stack.store is not None
    return stack.store


def _stack_executions(stack: Stack) -> ExecutionService:
    assert stack.executions is not None
    return stack.executions


class LocalBackend:
    """The operations of noetl.backend.Backend over the in-process services."""

    async def __aenter__(self) -> LocalBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    # ------------------------------------------------------------------ catalog
    async def register(self, text: str, file: str) -> dict[str, Any]:
        try:
            async with _store() as store:
                registered = await CatalogService(store).register(text, file, actor=local_actor().id)
        except PlaybookInvalidError as exc:
            raise Refusal([diag.format() for diag in exc.diagnostics], EXIT_INVALID) from None
        except (InvalidArgumentError, NotFoundError) as exc:  # a declared trigger that cannot fire
            raise _refused(exc) from None
        return {"path": registered.path, "version": registered.version,
                "warnings": [w.format() for w in registered.warnings],
                "triggers": [{"id": c.trigger.trigger_id, "name": c.trigger.name, "kind": c.trigger.kind,
                              "secret": c.secret, "webhook_path": webhook_path(c.trigger)}
                             for c in registered.triggers]}

    # ------------------------------------------------------------------ triggers
    async def _triggers(self, action: Callable[[TriggerService], Awaitable[T]]) -> T:
        try:
            async with _store() as store:
                return await action(TriggerService(store))
        except (InvalidArgumentError, NotFoundError, ConflictError) as exc:
            raise _refused(exc) from None

    async def trigger_create(self, body: dict[str, Any]) -> dict[str, Any]:
        request = _trigger_request(body)

        async def created(service: TriggerService) -> dict[str, Any]:
            done = await service.create(request.path, request.spec(), actor=local_actor().id)
            return {**service.describe(done.trigger), "secret": done.secret}

        return await self._triggers(created)

    async def trigger_list(self, path: str | None) -> list[dict[str, Any]]:
        async def listed(service: TriggerService) -> list[dict[str, Any]]:
            return [service.describe(r) for r in await service.list(path=path)]

        return await self._triggers(listed)

    async def trigger_show(self, trigger_id: str, limit: int) -> dict[str, Any]:
        async def shown(service: TriggerService) -> dict[str, Any]:
            record = await service.get(trigger_id)
            return {**service.describe(record), "firings": [
                service.describe_firing(f) for f in await service.firings(trigger_id, limit=limit)]}

        return await self._triggers(shown)

    async def trigger_set_paused(self, trigger_id: str, paused: bool) -> dict[str, Any]:
        async def changed(service: TriggerService) -> dict[str, Any]:
            return service.describe(await service.set_paused(trigger_id, paused, actor=local_actor().id))

        return await self._triggers(changed)

    async def trigger_delete(self, trigger_id: str) -> None:
        await self._triggers(lambda service: service.delete(trigger_id, actor=local_actor().id))

    async def catalog_list(self, prefix: str | None) -> list[dict[str, Any]]:
        async with _store() as store:
            return [_summary(item) for item in await CatalogService(store).list(prefix)]

    async def catalog_get(self, path: str, version: int | None) -> dict[str, Any]:
        try:
            async with _store() as store:
                found = await CatalogService(store).get(path, version)
        except NotFoundError as exc:
            raise _refused(exc) from None
        return {**_summary(found), "content": found.text}

    # ------------------------------------------------------------------ credentials
    async def _credentials(self, action: Callable[[Store], Awaitable[T]]) -> T:
        try:
            async with _store() as store:
                return await action(store)
        except ControlPlaneError as exc:
            raise _refused(exc) from None

    async def credential_set(self, name: str, type_: str, fields: dict[str, Any],
                             description: str | None) -> dict[str, Any]:
        info = await self._credentials(lambda store: store.credentials.set(name, type_, fields, description))
        return {"name": info.name, "type": info.type}

    async def credential_list(self) -> list[dict[str, Any]]:
        items = await self._credentials(lambda store: store.credentials.list())
        return [{"name": i.name, "type": i.type, "description": i.description,
                 "updated_at": i.updated_at.isoformat()} for i in items]

    async def credential_delete(self, name: str) -> None:
        await self._credentials(lambda store: store.credentials.delete(name))

    # ------------------------------------------------------------------ tokens
    async def _auth(self, action: Callable[[AuthService], Awaitable[T]]) -> T:
        try:
            async with _store() as store:
                return await action(AuthService(store))
        except (InvalidArgumentError, NotFoundError) as exc:
            raise _refused(exc) from None

    async def token_create(self, name: str, role: str) -> dict[str, Any]:
        async def create(auth: AuthService) -> dict[str, Any]:
            info, token = await auth.create_token(name, role)
            return {**_token(info), "token": token}

        return await self._auth(create)

    async def token_list(self) -> list[dict[str, Any]]:
        async def listed(auth: AuthService) -> list[dict[str, Any]]:
            return [_token(info) for info in await auth.tokens()]

        return await self._auth(listed)

    async def token_revoke(self, token_id: str) -> None:
        await self._auth(lambda auth: auth.revoke(token_id))

    # ------------------------------------------------------------------ executions
    async def execution(self, execution_id: str, rider: Rider) -> dict[str, Any]:
        try:
            summary, _ = await rider(lambda: _read(execution_id))
        except NotFoundError:
            raise _not_in_log(execution_id) from None
        return summary

    async def events(self, execution_id: str, rider: Rider) -> list[dict[str, Any]]:
        try:
            _, items = await rider(lambda: _read(execution_id))
        except NotFoundError:
            raise _not_in_log(execution_id) from None
        return items

    async def cancel(self, execution_id: str) -> None:
        dev = running_dev_stack()
        overrides: dict[str, Any] = {"orchestrator": False, "workers": {}}
        if dev is not None:
            overrides |= {"nats_url": dev["nats_url"], "pg_dsn": dev["pg_dsn"]}
        try:
            async with Stack(stack_config(**overrides)) as stack:
                await _stack_executions(stack).cancel(execution_id)
        except (NotFoundError, ConflictError) as exc:
            raise _refused(exc) from None

    async def execute(self, path: str, version: int | None, payload: dict[str, Any] | None, *, merge: bool,
                      wait: bool, quiet: bool, timeout: float | None, rider: Rider
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Submit (the payload is always deep-merged here: `merge` is for the API); with `wait`, follow
        it to its end here when no dev stack runs it."""
        try:
            return await _execute(path, version, payload, wait, quiet, timeout, rider)
        except (NotFoundError, InvalidArgumentError) as exc:
            raise _refused(exc) from None

    # ------------------------------------------------------------------ proposals and policies
    async def _policies(self, action: Callable[[PolicyService], Awaitable[T]]) -> T:
        try:
            async with _store() as store:
                return await action(PolicyService(store))
        except ControlPlaneError as exc:
            code = EXIT_UNAVAILABLE if isinstance(exc, ForbiddenError) else EXIT_INVALID
            raise _refused(exc, code) from None

    async def proposals(self, state: str | None, path: str | None, limit: int) -> list[dict[str, Any]]:
        states = [s.strip() for s in state.split(",") if s.strip()] if state else None

        async def listed(service: PolicyService) -> list[dict[str, Any]]:
            return [_dump(p) for p in await service.list(state=states, path=path, limit=limit)]

        return await self._policies(listed)

    async def proposal(self, proposal_id: str) -> dict[str, Any]:
        async def shown(service: PolicyService) -> dict[str, Any]:
            return _dump(await service.get(proposal_id))

        return await self._policies(shown)

    async def propose(self, draft: dict[str, Any]) -> dict[str, Any]:
        async def proposed(service: PolicyService) -> dict[str, Any]:
            return _dump(await service.propose(draft, local_actor()))

        return await self._policies(proposed)

    async def proposal_decide(self, proposal_id: str, decision: str, reason: str) -> dict[str, Any]:
        async def decided(service: PolicyService) -> dict[str, Any]:
            method = {"approve": service.approve, "reject": service.reject,
                      "rollback": service.rollback}[decision]
            return _dump(await method(proposal_id, local_actor(), reason))

        return await self._policies(decided)

    async def policies(self, path: str, step: str | None) -> dict[str, Any]:
        return await self._policies(lambda service: service.policies(path, step))

    async def watch_proposals(self, once: bool, diagnose: bool, poll: float, measure_after: int) -> list[str]:
        """Run the proposals agent here: diagnose new failures, propose through the guardrails, resume
        the approval waits, measure applied changes (`once`: one pass)."""
        try:
            return await _watch(once, diagnose, poll, measure_after)
        except ControlPlaneError as exc:
            raise _refused(exc, EXIT_UNAVAILABLE) from None

    # ------------------------------------------------------------------ diagnosis and similar failures
    async def diagnose(self, execution_id: str, *, use_llm: bool, use_similar: bool) -> Diagnosis:
        if use_similar and use_llm and (served := _dev_stack_api()) is not None:
            async with served:  # its indexer holds this machine's embeddings index
                return await served.diagnose(execution_id, use_llm=use_llm, use_similar=use_similar)
        try:
            return await _diagnose(execution_id, use_llm, use_similar)
        except NotFoundError:
            raise _not_in_log(execution_id) from None

    async def ask(self, message: str, conversation_id: str | None, *, use_similar: bool) -> dict[str, Any]:
        if use_similar and (served := _dev_stack_api()) is not None:
            async with served:  # its indexer holds this machine's embeddings index
                return await served.ask(message, conversation_id, use_similar=use_similar)
        try:
            return await _ask(message, conversation_id, use_similar)
        except ControlPlaneError as exc:
            raise _refused(exc, EXIT_INVALID) from None

    async def similar(self, execution_id: str, step: str | None, limit: int) -> list[dict[str, Any]]:
        if (served := _dev_stack_api()) is not None:
            async with served:
                return await served.similar(execution_id, step, limit)

        async def found(embeddings: Any) -> list[dict[str, Any]]:
            return [r.to_dict() for r in await embeddings.similar.for_execution(execution_id, step=step,
                                                                                limit=limit)]

        return await _search(found)

    async def search(self, text: str, limit: int) -> list[dict[str, Any]]:
        if (served := _dev_stack_api()) is not None:
            async with served:
                return await served.search(text, limit)

        async def found(embeddings: Any) -> list[dict[str, Any]]:
            return [r.to_dict() for r in await embeddings.similar.search(text, limit=limit)]

        return await _search(found)

    # ------------------------------------------------------------------ insights
    async def insights(self, path: str | None, since: str | None, limit: int) -> dict[str, Any]:
        if (served := _dev_stack_api()) is not None:  # its indexer's model merges alike failures
            async with served:
                return await served.insights(path, since, limit)
        from agents.insights.service import InsightsService
        from control_plane.services.insights import InsightsHistory
        from engine.errors import NoetlError

        try:
            async with _store() as store:
                return await InsightsService(InsightsHistory(store)).report(path, since, limit=limit)
        except ControlPlaneError as exc:
            raise _refused(exc, EXIT_UNAVAILABLE) from None
        except NoetlError as exc:
            raise _refused(exc, EXIT_INVALID) from None


async def _execute(path: str, version: int | None, payload: dict[str, Any] | None, wait: bool,
                   quiet: bool, timeout: float | None, rider: Rider
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Submit through a stack that only submits when a dev stack runs the executions (or with no
    `wait`); else one that runs it here, to its end."""
    dev = running_dev_stack()
    overrides: dict[str, Any] = {}
    if dev is not None:
        overrides = {"nats_url": dev["nats_url"], "pg_dsn": dev["pg_dsn"]}
    submit_only = dev is not None or not wait  # someone else runs it: only submit (and follow)
    if submit_only:
        overrides |= {"orchestrator": False, "workers": {}}
    config = stack_config(**overrides)
    session = Session(config, reopen=submit_only)
    try:
        entry = await rider(lambda: session.call(lambda stack: _stack_store(stack).catalog.get(
            path, version)))
        execution_id = new_execution_id()  # chosen here, so that starting again after an outage is safe
        await rider(lambda: session.call(lambda stack: _stack_executions(stack).start(
            entry.path, version=entry.version, payload=payload, execution_id=execution_id)))
        row = await rider(lambda: session.call(lambda stack: _stack_store(stack).executions.get(
            execution_id)))
        started = {"execution_id": execution_id, "path": entry.path, "version": entry.version,
                   "status": row.status}
        if not wait:
            if dev is None and not config.nats_url:
                print("no `noetl dev up` is running: the execution runs once an orchestrator and a worker "
                      "pool do (noetl dev up, or noetl server start + noetl worker start)", file=sys.stderr)
            return started, None
        progress = Progress(execution_id, quiet=quiet)
        with progress:
            summary = await follow_local(session, rider, execution_id, timeout, progress.update)
        if summary["status"] in ENDED:
            progress.finish(summary)
        return started, summary
    finally:
        await session.close()


async def _search(action: Callable[[Any], Awaitable[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """`action(embeddings)` after indexing what ended since the last run."""
    from agents.embeddings.index import IndexBusyError  # the embedding model's libraries: here only

    try:
        async with LocalEmbeddings() as embeddings:
            await embeddings.indexer.catch_up()
            return await action(embeddings)
    except NotFoundError as exc:
        raise Refusal([f"error: {exc.message}"], EXIT_INVALID) from None
    except IndexBusyError as exc:
        raise _refused(exc, EXIT_UNAVAILABLE) from None


def _dev_stack_api() -> RestBackend | None:
    """The running dev stack's API (with this home's command-line token) when its indexer runs and no
    NOETL_PG_DSN points elsewhere: the indexer holds this machine's embeddings index (one process at a
    time), so what needs similar failures is asked of the stack."""
    import json

    from noetl.devstack import components_file
    from noetl.fastrun import dev_api
    from noetl.remote import RestBackend

    config = stack_config()
    if config.pg_dsn is not None:
        return None
    api = dev_api(config.home)
    if api is None:
        return None
    try:
        components = json.loads(components_file(config.home).read_text()).get("components") or []
    except (OSError, ValueError):
        return None
    if not any(c.get("name") == "indexer" and c.get("status") == "up" for c in components):
        return None
    return RestBackend(f"http://{api.host}:{api.port}", api.token)


async def _ask(message: str, conversation_id: str | None, use_similar: bool) -> dict[str, Any]:
    from agents.chat.service import ChatService  # the chat and the diagnosis graph: here only
    from agents.diagnosis.service import DiagnosisService
    from control_plane.services.chat import ConversationService
    from control_plane.services.secrets import SecretValues

    embeddings = None
    async with _store() as store:
        try:
            executions = ExecutionService(store, None, resolve_ref=resolve_ref)  # type: ignore[arg-type]
            finder, embeddings, _ = await similar_finder(store) if use_similar else (None, None, None)
            diagnosis = DiagnosisService(executions, secrets=SecretValues(store), similar=finder,
                                         llm=llm_settings())
            chat = ChatService(executions, CatalogService(store), PolicyService(store),
                               ConversationService(store), diagnose=diagnosis.diagnose, similar=finder,
                               llm=llm_settings(), secrets=SecretValues(store))
            # this machine's user acts with every role here, as the other local commands do
            reply = await chat.ask(message, conversation_id, actor=local_actor(), role="admin")
            return reply.as_json()
        finally:
            if embeddings is not None:
                await embeddings.close()


async def _diagnose(execution_id: str, use_llm: bool, use_similar: bool) -> Diagnosis:
    from agents.diagnosis.service import DiagnosisService  # the diagnosis graph (langgraph): here only
    from control_plane.services.secrets import SecretValues

    embeddings = None
    gap = None
    async with _store() as store:
        try:
            # reading only: the service's bus (for starting and cancelling) is not needed
            executions = ExecutionService(store, None, resolve_ref=resolve_ref)  # type: ignore[arg-type]
            finder, embeddings, gap = await similar_finder(store) if use_similar else (None, None, None)
            service = DiagnosisService(executions, secrets=SecretValues(store), similar=finder,
                                       llm=llm_settings() if use_llm else None)
            diagnosis = await service.diagnose(execution_id)
        finally:
            if embeddings is not None:
                await embeddings.close()
    if gap is not None:  # say why there was no search, rather than the generic "not available"
        gaps = [g if not g.startswith("similar-failure search is not available") else gap
                for g in diagnosis.evidence_gaps]
        diagnosis = diagnosis.model_copy(update={"evidence_gaps": gaps})
    return diagnosis


async def _watch(once: bool, diagnose: bool, poll: float, measure_after: int) -> list[str]:
    from agents.proposals.loop import ProposalLoop  # langgraph only where the agent runs
    from control_plane.store.policies import ProposalNotifications

    dsn = await store_dsn()
    async with _store() as store:
        policies = PolicyService(store, PolicySettings(measure_after=measure_after))
        executions = ExecutionService(store, None)  # type: ignore[arg-type]  # reads only: no bus needed
        diagnoser = None
        if diagnose:
            from agents.diagnosis.graph import diagnose as run_diagnosis  # langgraph: only when diagnosing

            async def diagnoser(execution_id: str) -> Any:
                return await run_diagnosis(execution_id, executions=executions)

        async with ProposalLoop.open(policies, dsn, diagnose=diagnoser, executions=executions) as loop:
            if once:
                await loop.watch_failures()
                return await loop.tick()
            notes = ProposalNotifications(dsn)
            await notes.start()
            stop = asyncio.Event()
            try:
                await loop.run(stop, poll_s=poll, wake=notes.wait)
            finally:
                await notes.close()
            return []
