"""`noetl why EXECUTION_ID [--json]`: why an execution failed (or was slow), and what to change.

Locally it reads this machine's NoETL (the dev stack's Postgres, NOETL_PG_DSN, or the embedded one)
through the control plane's services; with NOETL_SERVER_URL set it asks the server
(GET /api/executions/{id}/diagnosis). An LLM refines the explanation when NOETL_LLM_BASE_URL or
NOETL_LLM_MODEL is set (noetl/llm_settings.py); `--no-llm` keeps the rules' diagnosis. Similar past
failures come from this machine's embeddings index when there is one (it is brought up to date first,
which loads the embedding model: several seconds); `--no-similar` skips them.
Exit 0 diagnosed, 2 unknown execution, 3 the store or server unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer

from agents.diagnosis.model import Diagnosis
from control_plane.client import NoetlClient
from control_plane.errors import NotFoundError
from noetl import remote

EXIT_OK, EXIT_INVALID = 0, 2
WIDTH = 100
CATCH_UP_BATCHES = 20  # executions not indexed yet are indexed first, up to this many batches


async def _diagnose_local(execution_id: str, use_llm: bool, use_similar: bool) -> Diagnosis:
    from agents.diagnosis.service import DiagnosisService
    from control_plane.services.executions import ExecutionService
    from control_plane.services.secrets import SecretValues
    from control_plane.stack import resolve_ref
    from noetl.commands.catalog import open_local_store
    from noetl.llm_settings import llm_settings

    store = await open_local_store()
    embeddings = None
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
        await store.close()
    if gap is not None:  # say why there was no search, rather than the generic "not available"
        gaps = [g if not g.startswith("similar-failure search is not available") else gap
                for g in diagnosis.evidence_gaps]
        diagnosis = diagnosis.model_copy(update={"evidence_gaps": gaps})
    return diagnosis


async def similar_finder(store: Any) -> tuple[Any, Any, str | None]:
    """(finder, embeddings runtime to close, None) over this machine's embeddings index (brought up to
    date first), or (None, None, why not): no index yet, or it is held by another process."""
    try:
        from agents.embeddings.index import IndexBusyError
        from agents.embeddings.runtime import EmbeddingsRuntime
        from control_plane.services.indexing import IndexingFeed
        from noetl.commands.similar import qdrant_target
        from noetl.settings import stack_config
    except ImportError as exc:
        return None, None, f"similar-failure search is not installed ({exc.name})"
    target = qdrant_target(stack_config().home)
    if "path" in target and not Path(target["path"]).exists():
        return None, None, ("no embeddings index yet: run `noetl indexer start` (or `noetl similar ID` once) "
                            "to find similar past failures")
    try:
        embeddings = EmbeddingsRuntime.open(IndexingFeed(store), **target)
    except IndexBusyError as exc:
        return None, None, f"the embeddings index is in use by another process ({exc}); set NOETL_SERVER_URL"
    try:
        await embeddings.indexer.catch_up(max_batches=CATCH_UP_BATCHES)
    except Exception as exc:  # the search is evidence, not a precondition
        await embeddings.close()
        return None, None, (f"the embeddings index could not be brought up to date "
                            f"({type(exc).__name__}: {exc})")
    return embeddings.similar, embeddings, None


def why(
    execution_id: Annotated[str, typer.Argument(help="The execution to diagnose.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Do not ask the configured LLM.")] = False,
    no_similar: Annotated[bool, typer.Option(
        "--no-similar", help="Skip the similar-failure search (it loads the embedding model).")] = False,
) -> None:
    """Why an execution failed (or was slow): root cause, evidence and concrete fixes."""
    if remote.active():
        async def fetch(client: NoetlClient) -> dict[str, Any]:
            return await client.diagnosis(execution_id)

        diagnosis = Diagnosis.model_validate(remote.call(fetch))
    else:
        try:
            diagnosis = asyncio.run(_diagnose_local(execution_id, use_llm=not no_llm,
                                                    use_similar=not no_similar))
        except NotFoundError:
            print(f"no execution '{execution_id}' in this NoETL's event log", file=sys.stderr)
            raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        print(json.dumps(diagnosis.model_dump(mode="json"), indent=2))
    else:
        print(render(diagnosis))


def render(d: Diagnosis) -> str:
    """The diagnosis as text for a terminal."""
    lines = [f"execution {d.execution_id}: {d.status}" + (f" ({d.playbook_path})" if d.playbook_path else "")]
    if d.root_cause_type is not None:
        lines.append(f"root cause: step '{d.root_cause_step}' - {d.root_cause_type}, {d.transience} "
                     f"(confidence {d.confidence:.2f})")
        if d.failed_step and d.failed_step != d.root_cause_step:
            lines.append(f"failed step: '{d.failed_step}'")
    elif d.root_cause_step:
        lines.append(f"slowest step: '{d.root_cause_step}' (confidence {d.confidence:.2f})")
    lines.append("")
    lines.extend(textwrap.wrap(d.summary, WIDTH))
    if d.suggested_fixes:
        lines.append("")
        lines.append("what to change:")
        for number, fix in enumerate(d.suggested_fixes, 1):
            lines.extend(textwrap.wrap(f"{number}. [{fix.kind}] {fix.description}", WIDTH,
                                       subsequent_indent="   "))
            if fix.change:
                lines.append("   " + json.dumps(fix.change, default=str))
    if d.evidence:
        lines.append("")
        lines.append("evidence:")
        for item in d.evidence:
            lines.extend(textwrap.wrap(f"- {item.fact} [event {item.event_id[:12]}]", WIDTH,
                                       subsequent_indent="  "))
    if d.similar_failures:
        lines.append("")
        lines.append("similar failures:")
        for s in d.similar_failures:
            after = ("later run succeeded" if s.next.later_run_succeeded else
                     "a retry succeeded" if s.next.retried_and_succeeded else "not resolved")
            cause = f", root cause {s.root_cause_type}" if s.root_cause_type else ""
            lines.append(f"- {s.execution_id} {s.playbook_path or ''} step '{s.step}' "
                         f"{s.error_kind}{cause} (score {s.score:.2f}; {after})")
    if d.evidence_gaps:
        lines.append("")
        lines.append("not known:")
        for gap in d.evidence_gaps:
            lines.extend(textwrap.wrap(f"- {gap}", WIDTH, subsequent_indent="  "))
    if d.explained_by != "rules":
        lines.append("")
        lines.append(f"(explained by {d.explained_by})")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command()(why)
