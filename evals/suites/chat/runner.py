"""The chat suite: questions in plain words over a seeded history, each answer scored.

    python -m evals.suites.chat.runner [--json]
    noetl eval chat [--json] [--no-llm] [--no-similar]

It starts a stack with embedded NATS and PostgreSQL in a temporary home, runs the playbooks of
history.yaml in order (failures of several kinds, a flaky step, successes), builds the embeddings index of
them, and asks every question of cases.yaml through the same ChatService that `POST /api/chat` and
`noetl ask` use, one conversation per entry (its questions in order, follow-ups included), as an admin
(the chat may propose; it never approves). Each answer is scored on:

- **execution resolved**: the answer is about the expected run (or about none, where nothing should
  resolve), lists the expected runs for a list question, and holds the expected text;
- **root cause named**: for a question about a failed run, the answer's diagnosis has the expected
  root-cause type and the answer's text names it.

Targets: 90 % each. Latency per answer p50/p95. A conversation with `clock: +1d` is asked a day after the
history ran, so "yesterday" is the history's day. With an LLM configured (NOETL_LLM_*, unless --no-llm)
both the diagnoses and the chat's answers use it (`answered_by` per result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from agents.chat.service import ChatService
from agents.diagnosis.llm import LlmSettings
from agents.diagnosis.service import DiagnosisService
from control_plane.services.catalog import CatalogService
from control_plane.services.chat import ConversationService
from control_plane.services.policies import PolicyService
from control_plane.services.secrets import SecretValues
from control_plane.stack import Stack, StackConfig
from evals.suites.diagnosis.runner import embeddings_finder, stop_embedded
from policies.model import Actor

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HISTORY = HERE / "history.yaml"
CASES = HERE / "cases.yaml"
TARGETS = {"execution_resolved": 0.9, "root_cause_named": 0.9}
RUN_TIMEOUT_S = 60.0
ASKER = Actor(id="eval:chat", name="chat suite")


@dataclass
class Asked:
    conversation: str
    question: str
    expected: dict[str, Any]
    reply: dict[str, Any] | None = None
    latency_ms: float | None = None
    error: str | None = None
    resolved: bool = False
    root_cause: bool | None = None  # None: the question expects no root cause
    misses: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        reply = self.reply or {}
        diagnosis = reply.get("diagnosis") or {}
        return {"conversation": self.conversation, "question": self.question, "expected": self.expected,
                "got": {"execution_id": reply.get("execution_id"), "intent": reply.get("intent"),
                        "answered_by": reply.get("answered_by"),
                        "root_cause_type": diagnosis.get("root_cause_type")},
                "execution_resolved": self.resolved, "root_cause_named": self.root_cause,
                "misses": self.misses, "latency_ms": self.latency_ms, "error": self.error,
                "answer": reply.get("answer")}


@dataclass
class Report:
    asked: list[Asked]
    wall_s: float
    history: dict[str, str]
    similar_note: str | None
    llm: str | None

    def share(self, name: str) -> float:
        values = [a.resolved if name == "execution_resolved" else a.root_cause for a in self.asked]
        counted = [v for v in values if v is not None]
        return sum(1 for v in counted if v) / len(counted) if counted else 0.0

    @property
    def targets_met(self) -> bool:
        return all(self.share(name) >= target for name, target in TARGETS.items())

    def latency(self, quantile: float) -> float | None:
        values = sorted(a.latency_ms for a in self.asked if a.latency_ms is not None)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(quantile * 100) - 1]

    def as_json(self) -> dict[str, Any]:
        return {"suite": "chat", "questions": len(self.asked),
                "conversations": len({a.conversation for a in self.asked}),
                "with_root_cause": sum(1 for a in self.asked if a.root_cause is not None),
                "llm": self.llm,
                "scores": {name: round(self.share(name), 4) for name in TARGETS},
                "targets": TARGETS, "targets_met": self.targets_met,
                "latency_ms": {"p50": _round(self.latency(0.5)), "p95": _round(self.latency(0.95))},
                "similar": self.similar_note or "the embeddings index of the history",
                "wall_s": round(self.wall_s, 1),
                "misses": [a.as_json() for a in self.asked if a.misses or a.error],
                "results": [a.as_json() for a in self.asked]}

    def text(self) -> str:
        data = self.as_json()
        lines = [f"chat suite: {data['questions']} questions in {data['conversations']} conversations, "
                 f"{self.wall_s:.1f} s" + (f" (LLM {self.llm})" if self.llm else " (no LLM)")]
        for name, value in data["scores"].items():
            lines.append(f"  {name:<20} {value:6.1%}  (target {TARGETS[name]:.0%})")
        latency = data["latency_ms"]
        lines.append(f"  latency              p50 {latency['p50']} ms, p95 {latency['p95']} ms")
        if self.similar_note:
            lines.append(f"  similar failures: {self.similar_note}")
        for miss in data["misses"]:
            lines.append(f"  MISS [{miss['conversation']}] {miss['question']!r}: {'; '.join(miss['misses'])}"
                         + (f"; error {miss['error']}" if miss["error"] else ""))
        lines.append("targets met" if self.targets_met else "targets NOT met")
        return "\n".join(lines)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _fill(text: str, history: dict[str, str]) -> str:
    for label, execution_id in history.items():
        text = text.replace("{" + label + "}", execution_id)
    return text


def score(asked: Asked, history: dict[str, str]) -> None:
    """Mark `asked` against its expectations (`misses` says what did not hold)."""
    reply = asked.reply or {}
    expected = asked.expected
    answer = str(reply.get("answer") or "")
    want = expected.get("execution")
    want_id = history.get(want) if want else None
    if want and want_id is None:
        asked.misses.append(f"the history has no run '{want}'")
    if reply.get("execution_id") != want_id:
        asked.misses.append(f"resolved {reply.get('execution_id')}, expected {want_id} ({want})")
    for label in expected.get("listed") or []:
        if history.get(label, label) not in answer:
            asked.misses.append(f"the list lacks {label} ({history.get(label)})")
    for text in expected.get("contains") or []:
        if _fill(text, history) not in answer:
            asked.misses.append(f"the answer lacks {_fill(text, history)!r}")
    asked.resolved = not asked.misses and asked.error is None
    kind = expected.get("root_cause")
    if kind:
        got = (reply.get("diagnosis") or {}).get("root_cause_type")
        asked.root_cause = got == kind and kind in answer
        if not asked.root_cause:
            asked.misses.append(f"root cause {got!r} (named in the answer: {kind in answer}), "
                                f"expected {kind}")


async def _seed(stack: Stack, home: Path, say: Callable[[str], None]) -> dict[str, str]:
    """Run the history; label -> execution id. RuntimeError when a run does not end as expected."""
    assert stack.executions is not None
    data = yaml.safe_load(HISTORY.read_text(encoding="utf-8"))
    registered = {name: await stack.executions.register(text, f"history.yaml#{name}")
                  for name, text in data["playbooks"].items()}
    counter = home / "rates_fetch.txt"
    history: dict[str, str] = {}
    for run in data["runs"]:
        playbook = registered[run["playbook"]]
        execution_id = await stack.executions.start(playbook.path, version=playbook.version,
                                                    payload={"counter": str(counter)})
        summary = await stack.executions.wait(execution_id, timeout_s=RUN_TIMEOUT_S)
        if summary.get("status") != run["expect"]:
            raise RuntimeError(f"history run {run['label']} ({playbook.path}) ended "
                               f"{summary.get('status')}, expected {run['expect']}: {summary.get('error')}")
        history[run["label"]] = execution_id
        say(f"ran {run['label']}: {execution_id} {run['expect']}")
    return history


async def run_suite(*, llm: LlmSettings | None = None, similar: bool = True,
                    progress: Callable[[str], None] | None = None) -> Report:
    """Seed the history on a fresh stack and ask every question of cases.yaml."""
    say = progress or (lambda _: None)
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="noetl-chat-eval-"))
    cases = yaml.safe_load(CASES.read_text(encoding="utf-8"))["conversations"]
    stack = Stack(StackConfig(home=home, workers={"default": 4}))
    asked: list[Asked] = []
    note: str | None = None
    try:
        async with stack:
            assert stack.executions is not None and stack.store is not None
            history = await _seed(stack, home, say)
            embeddings = None
            if similar:
                embeddings, note = await embeddings_finder(stack, home)
            else:
                note = "similar-failure search was turned off (--no-similar)"
            try:
                diagnosis = DiagnosisService(stack.executions, secrets=SecretValues(stack.store),
                                             similar=embeddings.similar if embeddings is not None else None,
                                             llm=llm)
                for conversation in cases:
                    shift = timedelta(days=1) if conversation.get("clock") == "+1d" else timedelta(0)
                    chat = ChatService(stack.executions, CatalogService(stack.store),
                                       PolicyService(stack.store), ConversationService(stack.store),
                                       diagnose=diagnosis.diagnose,
                                       similar=embeddings.similar if embeddings is not None else None,
                                       llm=llm, secrets=SecretValues(stack.store),
                                       clock=lambda shift=shift: datetime.now(UTC) + shift)
                    conversation_id: str | None = None
                    for entry in conversation["questions"]:
                        item = Asked(conversation["name"], _fill(entry["ask"], history),
                                     {k: v for k, v in entry.items() if k != "ask"})
                        t0 = time.perf_counter()
                        try:
                            reply = await chat.ask(item.question, conversation_id, actor=ASKER, role="admin")
                            item.reply = reply.as_json()
                            conversation_id = reply.conversation_id
                        except Exception as exc:  # a crash of the chat is a miss, reported
                            log.exception("asking %r failed", item.question)
                            item.error = f"{type(exc).__name__}: {exc}"
                        item.latency_ms = round((time.perf_counter() - t0) * 1000, 1)
                        score(item, history)
                        asked.append(item)
                        say(f"{'ok  ' if not item.misses and not item.error else 'MISS'} {item.question}")
            finally:
                if embeddings is not None:
                    await embeddings.close()
    finally:
        await asyncio.to_thread(stop_embedded, stack)
        shutil.rmtree(home, ignore_errors=True)
    return Report(asked, time.perf_counter() - started, history, note, llm.model if llm else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-similar", action="store_true")
    args = parser.parse_args(argv)
    report = asyncio.run(run_suite(similar=not args.no_similar,
                                   progress=lambda line: print(line, file=sys.stderr)))
    print(json.dumps(report.as_json(), indent=2) if args.json else report.text())
    return 0 if report.targets_met else 1


if __name__ == "__main__":
    sys.exit(main())
