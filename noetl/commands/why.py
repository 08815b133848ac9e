"""`noetl why EXECUTION_ID [--json]`: why an execution failed (or was slow), and what to change.

Locally it reads this machine's NoETL (the dev stack's Postgres, NOETL_PG_DSN, or the embedded one)
through the control plane's services; with NOETL_SERVER_URL set it asks the server
(GET /api/executions/{id}/diagnosis); noetl.backend chooses. An LLM refines the explanation when
NOETL_LLM_BASE_URL or NOETL_LLM_MODEL is set (noetl/llm_settings.py); `--no-llm` keeps the rules'
diagnosis. Similar past failures come from this machine's embeddings index when there is one (it is
brought up to date first, which loads the embedding model: several seconds); `--no-similar` skips them.
Exit 0 diagnosed, 2 unknown execution, 3 the store or server unreachable.
"""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Annotated

import typer

from noetl.backend import call

if TYPE_CHECKING:
    from agents.diagnosis.model import Diagnosis

EXIT_OK, EXIT_INVALID = 0, 2
WIDTH = 100


def why(
    execution_id: Annotated[str, typer.Argument(help="The execution to diagnose.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Do not ask the configured LLM.")] = False,
    no_similar: Annotated[bool, typer.Option(
        "--no-similar", help="Skip the similar-failure search (it loads the embedding model).")] = False,
) -> None:
    """Why an execution failed (or was slow): root cause, evidence and concrete fixes."""
    diagnosis = call(lambda backend: backend.diagnose(execution_id, use_llm=not no_llm,
                                                      use_similar=not no_similar))
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
