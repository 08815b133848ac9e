"""`noetl insights [PATH] [--since 7d] [--json]`: which steps got slower, the bottlenecks, the anomalies
and the failure clusters of a window (docs/insights.md).

Locally it reads this machine's event log through the control plane's services; with NOETL_SERVER_URL
set it asks the server (GET /api/insights); noetl.backend chooses. Exit 0, 2 for a bad --since, 3 when
the store or server is unreachable.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from noetl.backend import call


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal: the headline figures, then each section's rows."""
    outcomes = report["outcomes"]
    lines = [f"{report['executions']} execution(s) of {report['path'] or 'every playbook'} since "
             f"{report['since'][:19]}: " + ", ".join(f"{n} {status}" for status, n in outcomes.items())]
    slower = [s for s in report["steps"] if s["slower"]]
    if slower:
        lines += ["", "got slower (p50 of the newer half of the runs over the older half):"]
        lines += [f"- {s['path']} / {s['step']}: x{s['trend']:.2f} (p50 {_ms(s['p50_ms'])}, p95 "
                  f"{_ms(s['p95_ms'])})" for s in slower]
    if report["bottlenecks"]:
        lines += ["", "bottlenecks (share of the critical path):"]
        lines += [f"- {b['path']} / {b['step']}: {b['share']:.0%} ({b['reason']})"
                  for b in report["bottlenecks"]]
    if report["anomalies"]:
        lines += ["", "anomalies:"]
        lines += [f"- {a['execution_id']} {a['path']}: {a['reason']}" for a in report["anomalies"]]
    if report["clusters"]:
        lines += ["", "failure clusters:"]
        for c in report["clusters"]:
            since = f"; first in {c['introduced_in']}" if c["introduced_in"] else ""
            lines.append(f"- {c['count']}x in {c['executions']} execution(s) {', '.join(c['steps'])}: "
                         f"{c['signature']} (first {str(c['first_seen'])[:19]}, last "
                         f"{str(c['last_seen'])[:19]}{since})")
    if report.get("triggers"):
        lines += ["", "triggers: started, skipped, queued, failed"]
        for t in report["triggers"]:
            why = "; ".join(f"{r['count']}x {r['reason']}" for r in t["reasons"])
            lines.append(f"- {t['trigger_id']} ({t['kind']} of {t['path']}): {t['started']}, {t['skipped']}, "
                         f"{t['queued']}, {t['failed']}" + (f" — {why}" if why else ""))
    if report["steps"]:
        lines += ["", "steps: runs, p50, p95, queue p50, retried, failed"]
        lines += [f"- {s['path']} / {s['step']}: {s['runs']}, {_ms(s['p50_ms'])}, {_ms(s['p95_ms'])}, "
                  f"{_ms(s['queue_p50_ms'])}, {s['retry_rate']:.0%}, {s['failure_rate']:.0%}"
                  for s in report["steps"]]
    return "\n".join(lines)


def insights(
    path: Annotated[str | None, typer.Argument(help="One playbook's catalog path (default: all).",
                                               show_default=False)] = None,
    since: Annotated[str, typer.Option(help="A span (7d, 24h, 90m) or an ISO 8601 time.")] = "7d",
    limit: Annotated[int, typer.Option(min=1, max=200, help="Rows per section at most.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Step durations and their trends, bottlenecks, anomalies and failure clusters of a window."""
    report = call(lambda backend: backend.insights(path, since, limit))
    print(json.dumps(report, indent=2) if as_json else render(report))


def register(app: typer.Typer) -> None:
    app.command("insights")(insights)
