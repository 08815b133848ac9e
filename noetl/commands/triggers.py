"""`noetl trigger create|list|show|pause|resume|delete`: what starts runs besides a request
(docs/triggers.md). Triggers fire while a NoETL server runs (`noetl dev up`, `noetl server start`)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from noetl.backend import call

trigger_app = typer.Typer(help="Triggers: cron, intervals, the end of other runs, NATS subjects, webhooks.",
                          no_args_is_help=True)

KINDS = ("--cron", "--every", "--after", "--subject", "--webhook")


def _refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(2)


def _describe(trigger: dict[str, Any]) -> str:
    from control_plane.triggers.definition import summary

    what = summary(trigger["kind"], trigger.get("spec") or {}, trigger.get("webhook_path"))
    state = " [paused]" if trigger.get("paused") else ""
    return f"{trigger['id']}\t{trigger['path']}\t{what}{state}"


def _print(out: Any, as_json: bool) -> None:
    print(json.dumps(out, indent=2, default=str) if as_json else out)


@trigger_app.command("create")
def trigger_create(
    path: Annotated[str, typer.Argument(help="The catalog path of the playbook it starts.",
                                        show_default=False)],
    cron: Annotated[str | None, typer.Option(help="A cron expression, e.g. '0 2 * * *' or @hourly.")] = None,
    tz: Annotated[str | None, typer.Option(help="The cron's time zone (IANA, e.g. Europe/Berlin).")] = None,
    every: Annotated[str | None, typer.Option(help="A fixed interval: 30s, 15m, 1h, 1h30m.")] = None,
    after: Annotated[str | None, typer.Option(help="Start after each run of this path ends.")] = None,
    on: Annotated[str, typer.Option(help="With --after: completed, failed or any.")] = "completed",
    subject: Annotated[str | None, typer.Option(help="Start for each message on this NATS subject.")] = None,
    webhook: Annotated[bool, typer.Option("--webhook", help="Start for each signed POST to it.")] = False,
    payload: Annotated[str | None, typer.Option(help="The payload template, a JSON object (Jinja2 in its "
                                                     "strings: trigger, firing, upstream, message, request)."
                                                )] = None,
    version: Annotated[int | None, typer.Option(help="Start this version (default: the newest).")] = None,
    name: Annotated[str | None, typer.Option(help="A name to tell it by.")] = None,
    catchup: Annotated[str | None, typer.Option(help="Time missed while NoETL was down: skip, latest "
                                                     "(default) or all.")] = None,
    catchup_limit: Annotated[int | None, typer.Option(help="With --catchup all: at most this many.")] = None,
    concurrency: Annotated[str | None, typer.Option(help="While its previous run runs: allow (default), "
                                                         "skip or queue.")] = None,
    jitter: Annotated[str | None, typer.Option(help="Delay each start up to this much (30s).")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trigger as JSON.")] = False,
) -> None:
    """Create a trigger; a webhook's secret is printed this once."""
    given = [flag for flag, value in zip(KINDS, (cron, every, after, subject, webhook), strict=True) if value]
    if len(given) != 1:
        _refuse(f"give exactly one of {', '.join(KINDS)} (got {', '.join(given) or 'none'})")
    body: dict[str, Any] = {"path": path}
    if cron is not None:
        body.update(cron=cron, **({"tz": tz} if tz else {}))
    elif tz is not None:
        _refuse("--tz goes with --cron")
    if every is not None:
        body["every"] = every
    if after is not None:
        body["after"] = {"path": after, "on": on}
    if subject is not None:
        body["subject"] = subject
    if webhook:
        body["webhook"] = True
    if payload is not None:
        try:
            body["payload"] = json.loads(payload)
        except ValueError as exc:
            _refuse(f"--payload is not JSON ({exc}); pass an object such as "
                    "'{\"day\": \"{{ firing.scheduled_at }}\"}'")
    optional = {"version": version, "name": name, "catchup": catchup, "catchup_limit": catchup_limit,
                "concurrency": concurrency, "jitter": jitter}
    body.update({key: value for key, value in optional.items() if value is not None})
    if paused:
        body["paused"] = True
    out = call(lambda backend: backend.trigger_create(body))
    if as_json:
        _print(out, True)
        return
    print(f"trigger {_describe(out)}")
    if out.get("next_at"):
        print(f"  next: {', '.join(str(t) for t in out['next_at'])}")
    if out.get("secret"):
        print(f"  deliveries: POST {out['webhook_path']} with "
              "X-NoETL-Signature: sha256=<HMAC-SHA256 of the body>",
              file=sys.stderr)
        print("  its secret, shown only now:", file=sys.stderr)
        print(out["secret"])


@trigger_app.command("list")
def trigger_list(
    path: Annotated[str | None, typer.Option(help="Only the triggers of this playbook path.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The triggers, by path."""
    items = call(lambda backend: backend.trigger_list(path))
    if as_json:
        _print(items, True)
        return
    if not items:
        print("no triggers" + (f" of {path}" if path else ""))
    for item in items:
        print(_describe(item))


@trigger_app.command("show")
def trigger_show(
    trigger_id: Annotated[str, typer.Argument(help="The trigger's id (noetl trigger list).",
                                              show_default=False)],
    limit: Annotated[int, typer.Option(help="How many recent firings.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A trigger and its recent firings, with the executions they started (or why they did not)."""
    out = call(lambda backend: backend.trigger_show(trigger_id, limit))
    if as_json:
        _print(out, True)
        return
    print(_describe(out))
    if out.get("next_at"):
        print(f"next: {', '.join(str(t) for t in out['next_at'])}")
    firings = out.get("firings") or []
    print(f"firings ({len(firings)} newest):" if firings else "no firings yet")
    for firing in firings:
        line = f"  {firing['scheduled_at']}\t{firing['status']}"
        if firing.get("execution_id"):
            line += f"\texecution {firing['execution_id']}"
        if firing.get("reason"):
            line += f"\t{firing['reason']}"
        print(line)


@trigger_app.command("pause")
def trigger_pause(trigger_id: Annotated[str, typer.Argument(show_default=False)],
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Pause a trigger: nothing fires until it is resumed."""
    out = call(lambda backend: backend.trigger_set_paused(trigger_id, True))
    _print(out if as_json else f"trigger {trigger_id} paused", as_json)


@trigger_app.command("resume")
def trigger_resume(trigger_id: Annotated[str, typer.Argument(show_default=False)],
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Resume a trigger; a time trigger goes on from now (the paused time is not caught up)."""
    out = call(lambda backend: backend.trigger_set_paused(trigger_id, False))
    _print(out if as_json else f"trigger {trigger_id} resumed", as_json)


@trigger_app.command("delete")
def trigger_delete(trigger_id: Annotated[str, typer.Argument(show_default=False)],
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delete a trigger (its firings go with it; its events stay in the log)."""
    call(lambda backend: backend.trigger_delete(trigger_id))
    _print({"id": trigger_id, "deleted": True} if as_json else f"trigger {trigger_id} deleted", as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(trigger_app, name="trigger")
