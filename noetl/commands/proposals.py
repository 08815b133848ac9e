"""`noetl proposals list|show|propose|approve|reject|rollback|watch` and `noetl policies show`: guarded
configuration changes (docs/policies.md).

With NOETL_SERVER_URL set they go through the server's API (approve, reject and rollback need an
`approver` token that did not author the proposal). Without it they work on this machine's store through
the policies service, as the local user (`local:<user>`); noetl.backend chooses. `watch` runs the
proposals agent here: it diagnoses new failures, proposes changes through the guardrails, resumes the
approval waits and measures applied changes (`--once`: one pass).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from noetl.backend import call
from policies.states import PROPOSAL_STATES

EXIT_INVALID = 2

proposals_app = typer.Typer(help="Configuration changes: proposed, approved, applied, measured, rolled back.",
                            no_args_is_help=True)
policies_app = typer.Typer(help="The runtime overlays approved changes put on playbook steps.",
                           no_args_is_help=True)


def _line(p: dict[str, Any]) -> str:
    target = p.get("target") or {}
    return (f"{p['id']}\t{p['state']}\t{p['kind']}\t{target.get('path')}:{target.get('step')}\t{p['risk']}\t"
            f"{p.get('author_name') or p.get('author')}\t{p.get('created_at')}")


def _print_proposal(p: dict[str, Any]) -> None:
    target = p.get("target") or {}
    print(f"proposal {p['id']} ({p['kind']}, risk {p['risk']}): {p['state']}")
    print(f"  target:    {target.get('path')} step {target.get('step')}")
    if p.get("change"):
        print(f"  change:    {json.dumps(p['change'], sort_keys=True)}")
    if p.get("rollback_of"):
        print(f"  undoes:    {p['rollback_of']}")
    print(f"  author:    {p.get('author_name') or p.get('author')}")
    print(f"  rationale: {p.get('rationale')}")
    if p.get("applied_version") is not None:
        print(f"  overlay:   version {p['applied_version']} (was {p.get('base_version') or 'none'}): "
              f"{json.dumps(p.get('overlay') or {}, sort_keys=True)}")
    measurement = p.get("measurement")
    if measurement:
        print(f"  measured:  {measurement.get('verdict')}: {'; '.join(measurement.get('reasons') or [])}")
    if p.get("rollback_id"):
        print(f"  rollback:  proposed as {p['rollback_id']}")
    for t in p.get("transitions") or []:
        print(f"  {t.get('at')}  {t.get('from_state') or '-'} -> {t.get('to_state')}  by "
              f"{t.get('who_name') or t.get('who')}: {t.get('why')}")


@proposals_app.command("list")
def proposals_list(
    state: Annotated[str | None, typer.Option(help=f"Only this state ({', '.join(PROPOSAL_STATES)}); "
                                                   "several separated by commas.")] = None,
    path: Annotated[str | None, typer.Option(help="Only proposals for this playbook path.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the proposals as a JSON list.")] = False,
) -> None:
    """Proposals, newest first: id, state, kind, path:step, risk, author, created."""
    items = call(lambda backend: backend.proposals(state, path, limit))
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        print(_line(item))


@proposals_app.command("show")
def proposals_show(
    proposal_id: Annotated[str, typer.Argument(help="The proposal's id.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One proposal: its change, rationale, state, measured effect and every transition (who and why)."""
    item = call(lambda backend: backend.proposal(proposal_id))
    if as_json:
        print(json.dumps(item, indent=2, default=str))
    else:
        _print_proposal(item)


@proposals_app.command("propose")
def proposals_propose(
    path: Annotated[str, typer.Option(help="The playbook's catalog path.")],
    step: Annotated[str, typer.Option(help="The step whose overlay changes.")],
    change: Annotated[str, typer.Option(help='The overlay fields, as JSON: {"timeout_s": 60}, '
                                             '{"pool": "gpu"}, {"retry": {"when": ..., "then": '
                                             '{"do": "retry", ...}}}.')],
    rationale: Annotated[str, typer.Option(help="Why the change is needed.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Propose a change through the guardrails (exit 2 when they refuse it, with every rule it breaks)."""
    try:
        fields = json.loads(change)
    except ValueError as exc:
        print(f"error: --change is not JSON ({exc})", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from None
    draft = {"target": {"path": path, "step": step}, "change": fields, "rationale": rationale}
    item = call(lambda backend: backend.propose(draft))
    if as_json:
        print(json.dumps(item, indent=2, default=str))
    else:
        print(f"proposed {item['id']} (risk {item['risk']}): another person approves it with "
              f"`noetl proposals approve {item['id']} --reason TEXT`")


def _decide(proposal_id: str, decision: str, reason: str, as_json: bool) -> None:
    item = call(lambda backend: backend.proposal_decide(proposal_id, decision, reason))
    if as_json:
        print(json.dumps(item, indent=2, default=str))
        return
    if decision == "approve":
        print(f"proposal {proposal_id} approved and applied: overlay version {item.get('applied_version')}")
    elif decision == "reject":
        print(f"proposal {proposal_id} rejected")
    else:
        print(f"proposal {proposal_id} is {item.get('state')}: the step's previous overlay is active again")


@proposals_app.command("approve")
def proposals_approve(
    proposal_id: Annotated[str, typer.Argument(help="The proposal's id.", show_default=False)],
    reason: Annotated[str, typer.Option(help="Why (recorded with the approval).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a proposal (not your own) and apply it: new executions use the change."""
    _decide(proposal_id, "approve", reason, as_json)


@proposals_app.command("reject")
def proposals_reject(
    proposal_id: Annotated[str, typer.Argument(help="The proposal's id.", show_default=False)],
    reason: Annotated[str, typer.Option(help="Why (recorded with the rejection).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reject a proposal (not your own)."""
    _decide(proposal_id, "reject", reason, as_json)


@proposals_app.command("rollback")
def proposals_rollback(
    proposal_id: Annotated[str, typer.Argument(help="The applied change's id.", show_default=False)],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "rolled back from the command line",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Roll an applied change back: the step's overlay before it is active again for new executions."""
    _decide(proposal_id, "rollback", reason, as_json)


@proposals_app.command("watch")
def proposals_watch(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    diagnose: Annotated[bool, typer.Option(help="Diagnose new failures and propose changes.")] = True,
    poll: Annotated[float, typer.Option(help="Seconds between passes (a proposal change wakes it).")] = 5.0,
    measure_after: Annotated[int, typer.Option(help="Executions after a change before its effect is "
                                                    "measured.")] = 5,
) -> None:
    """Run the proposals agent on this machine's store (not through a server)."""
    moved = call(lambda backend: backend.watch_proposals(once, diagnose, poll, measure_after))
    if once:
        print(f"{len(moved)} proposal(s) moved: {' '.join(moved)}".rstrip(": "))


@policies_app.command("show")
def policies_show(
    path: Annotated[str, typer.Argument(help="The playbook's catalog path.", show_default=False)],
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The active overlay of each step of a playbook, and every version of it."""
    view = call(lambda backend: backend.policies(path, step))
    if as_json:
        print(json.dumps(view, indent=2, default=str))
        return
    steps = view.get("steps") or []
    if not steps:
        print(f"{path}: no overlays (every step runs as registered)")
    for entry in steps:
        print(f"{path} step {entry['step']}: version {entry['active_version']} "
              f"{json.dumps(entry['overlay'], sort_keys=True)}")
        for version in entry.get("versions") or []:
            restores = "" if version.get("restores") is None else \
                f" (restores {version['restores'] or 'none'})"
            print(f"  v{version['version']}{restores} {json.dumps(version['overlay'], sort_keys=True)}  "
                  f"proposal {version.get('proposal_id')}  by {version.get('created_by')}: "
                  f"{version.get('reason')}")


def register(app: typer.Typer) -> None:
    app.add_typer(proposals_app, name="proposals")
    app.add_typer(policies_app, name="policies")
