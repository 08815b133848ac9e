"""`noetl eval ...`: the evaluation suites, each printing its figures as JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

eval_app = typer.Typer(help="Run an evaluation suite and print its figures.", no_args_is_help=True)


@eval_app.command("dsl")
def eval_dsl(
    cases: Annotated[int, typer.Option(help="How many mutated playbooks to check.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed gives the same cases).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the default output).")] = True,
) -> None:
    """Fuzz the playbook reader: no crash, every error located. Exit 1 when either fails."""
    from evals.suites import dsl_fuzz

    report = dsl_fuzz.run(cases, seed)
    print(json.dumps(report.as_json(), indent=2 if as_json else None))
    raise typer.Exit(0 if report.crashes == 0 and report.unlocated == 0 else 1)


@eval_app.command("proposals")
def eval_proposals(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the default output).")] = True,
) -> None:
    """Diagnoses -> proposals against the expected ones and the guardrails. Exit 1 below 100 %."""
    from evals.suites.proposals import runner

    report = runner.run()
    print(json.dumps(report.as_json(), indent=2 if as_json else None))
    raise typer.Exit(0 if report.ok else 1)


@eval_app.command("diagnosis")
def eval_diagnosis(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (default: a readable report).")] = False,
    case: Annotated[list[str] | None, typer.Option("--case", help="Only this case (repeatable).")] = None,
    no_similar: Annotated[bool, typer.Option("--no-similar", help="Skip the similar failures.")] = False,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Do not ask the configured LLM.")] = False,
) -> None:
    """Failing playbooks on a real stack, diagnosed: accuracy per field, recall@5, latency. Exit 1 below
    the targets (90 % root-cause type and transience, recall@5 0.9)."""
    import asyncio
    import sys

    from evals.suites.diagnosis import runner
    from noetl.llm_settings import llm_settings

    report = asyncio.run(runner.run_suite(
        only=case, llm=None if no_llm else llm_settings(),
        similar=None if no_similar else runner.embeddings_finder,
        progress=lambda line: print(line, file=sys.stderr)))
    print(json.dumps(report.as_json(), indent=2) if as_json else report.text())
    raise typer.Exit(0 if report.targets_met else 1)


@eval_app.command("chat")
def eval_chat(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (default: a readable report).")] = False,
    no_similar: Annotated[bool, typer.Option("--no-similar", help="Skip the similar failures.")] = False,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Do not ask the configured LLM.")] = False,
) -> None:
    """Questions in plain words over a seeded history, through the chat: the share whose execution is
    resolved and whose root cause is named, latency. Exit 1 below the targets (90 % each)."""
    import asyncio
    import sys

    from evals.suites.chat import runner
    from noetl.llm_settings import llm_settings

    report = asyncio.run(runner.run_suite(llm=None if no_llm else llm_settings(), similar=not no_similar,
                                          progress=lambda line: print(line, file=sys.stderr)))
    print(json.dumps(report.as_json(), indent=2) if as_json else report.text())
    raise typer.Exit(0 if report.targets_met else 1)


@eval_app.command("planning")
def eval_planning(
    instances: Annotated[int, typer.Option(min=1, help="Random instances (<= 8 tasks, 2 pools).")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed gives the same instances).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the default output).")] = True,
) -> None:
    """The planner against the brute-force optimum. Exit 1 when any plan is not optimal or not valid."""
    from evals.suites import planning

    report = planning.run(instances, seed)
    print(json.dumps(report.as_json(), indent=2 if as_json else None))
    raise typer.Exit(0 if report.passed else 1)


@eval_app.command("chaos")
def eval_chaos(
    rounds: Annotated[int, typer.Option(min=1, help="Rounds; the components are killed in turn: worker, "
                                                    "orchestrator, nats, postgres.")] = 4,
    items: Annotated[int, typer.Option(min=8, help="Items of the loop each round runs.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed (when in each round the kill comes).")] = 0,
    only: Annotated[str, typer.Option("--components", help="Kill only these, in turn (comma-separated: "
                                                           "worker, orchestrator, nats, postgres).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (default: one line per round).")]
    = False,
) -> None:
    """Kill a component (SIGKILL) mid-loop each round, on a stack of the suite's own: completed or not,
    items lost, items run more than once, time to recover; a summary line last. Exit 1 when a round did
    not complete or lost an item."""
    import sys

    from evals.suites import chaos

    components = tuple(c.strip() for c in only.split(",") if c.strip()) or chaos.COMPONENTS
    unknown = [c for c in components if c not in chaos.COMPONENTS]
    if unknown:
        print(f"--components: unknown {', '.join(unknown)}; choose from {', '.join(chaos.COMPONENTS)}",
              file=sys.stderr)
        raise typer.Exit(2)
    report = chaos.run(rounds, seed, items, components, progress=None if as_json else print)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.summary_line())
    if not report.ok:
        print("chaos: " + report.summary_line(), file=sys.stderr)
    raise typer.Exit(0 if report.ok else 1)


@eval_app.command("insights")
def eval_insights(
    seed: Annotated[int, typer.Option(help="Random seed of the planted history.")] = 0,
    embeddings: Annotated[bool, typer.Option(help="Merge failure signatures by the embeddings model (as a "
                                                  "server running the indexer does), or by their words.")]
    = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (default: one line per finding).")]
    = False,
) -> None:
    """Seeded histories with planted slowdowns, anomalies and failure clusters (one coming with a new
    playbook version, one with a policy change), written to a real Postgres event log (NOETL_PG_DSN's
    server, else an embedded one) and read back by `noetl insights`' service: precision and recall of
    each finding. Exit 1 when a target (0.9) is missed."""
    import asyncio
    import os

    from evals.suites import insights

    say = (lambda _: None) if as_json else print
    result = asyncio.run(insights.run_suite(seed_value=seed, dsn=os.environ.get("NOETL_PG_DSN") or None,
                                            embeddings=embeddings, say=say))
    doc = result.as_json()
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        for name in ("slowdowns", "duration_anomalies", "outcome_anomalies", "clusters"):
            part = doc[name]
            print(f"{name:<20} precision {part['precision']:.3f}  recall {part['recall']:.3f}  "
                  f"({part['hits']} of {part['planted']} planted, {part['found']} reported)")
        print(f"{'introduced_in':<20} recall {doc['introduced_in']['recall']:.3f}")
        print("targets met" if result.passed else "targets NOT met")
    raise typer.Exit(0 if result.passed else 1)


@eval_app.command("cluster")
def eval_cluster(
    items: Annotated[int, typer.Option(min=40, help="Items of the loop in each fault round.")] = 1000,
    faults: Annotated[str, typer.Option("--faults", help="Fault rounds, comma-separated: nats, orchestrator, "
                                                         "network (needs root: --isolate).")]
    = "nats,orchestrator,network",
    hosts: Annotated[str, typer.Option("--hosts", help="Worker host counts to measure the scaling with, "
                                                       "comma-separated ('' for none).")] = "1,2,4",
    scaling_items: Annotated[int, typer.Option(min=10, help="Items of each scaling loop.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (which node or host a fault hits).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (default: one line per run).")] = False,
) -> None:
    """Faults on a local cluster (`noetl dev cluster`): a NATS node killed, the orchestrator owning the
    execution's partition killed, a worker host cut off for 20 s, each during a parallel loop with a side
    effect per item; then items/s with 1, 2 and 4 worker hosts. Exit 1 when a round lost an item, broke
    the order, ran an item twice that was not in flight at the fault, or a run did not complete."""
    import sys

    from evals.suites import cluster

    chosen = tuple(f.strip() for f in faults.split(",") if f.strip())
    unknown = [f for f in chosen if f not in cluster.FAULTS]
    counts = [c.strip() for c in hosts.split(",") if c.strip()]
    if unknown or not all(c.isdigit() and int(c) > 0 for c in counts):
        print(f"--faults: choose from {', '.join(cluster.FAULTS)}; --hosts: positive numbers "
              f"(got {faults!r}, {hosts!r})", file=sys.stderr)
        raise typer.Exit(2)
    report = cluster.run(items, chosen, tuple(int(c) for c in counts), scaling_items, seed,
                         progress=None if as_json else print)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.summary_line())
    if not report.ok:
        print("cluster: " + report.summary_line(), file=sys.stderr)
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
