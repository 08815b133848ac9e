"""What a chat question asks and what it points at, read without any LLM: PURE (no I/O, the clock passed in).

`read_question(text, playbooks, now)` returns a `Question`: the intent (why, fix, transient, similar,
propose, proposals, status, list; decide: approve, reject or roll back, which the chat never does), an
execution id when one is written out, the playbook it names (matched
against the catalog's paths and names), a time window ("yesterday", "last night", "today", "this
morning", "this week", "in the last 3 hours"), whether it asks about failures, whether it asks for the
newest one, and whether it leans on what the conversation already points at ("it", "that run").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Intent = Literal["why", "fix", "transient", "similar", "propose", "proposals", "status", "list", "decide"]
INTENTS: tuple[str, ...] = ("why", "fix", "transient", "similar", "propose", "proposals", "status", "list",
                            "decide")

EXECUTION_ID = re.compile(r"(?<![\w/.-])(\d{10,20})(?![\w/.-])")  # 64-bit ids: 19 digits as made
_WORD = re.compile(r"[a-z0-9]+")

# the first pattern that matches decides (order matters: "propose that retry" is not "is a retry safe?")
_INTENT_PATTERNS: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    ("decide", re.compile(r"\b(approve|reject|roll ?back|revert|undo)\b")),  # never done by the chat
    ("propose", re.compile(r"\b(propose|file|open|submit|create|make|raise)\b.{0,40}\b(retry|change|fix|"
                           r"proposal|timeout|that|it|this)\b|\bpropose\b|\bgo ahead\b")),
    ("proposals", re.compile(r"\b(proposals?|pending changes?|approvals?|awaiting approval|review queue)\b")),
    ("similar", re.compile(r"\bsimilar\b|\bhappened before\b|\bseen (this|that|it) before\b|"
                           r"\blike (this|that|it)\b|\bother (failures|runs) like\b|\bbefore\?|"
                           r"\bprecedents?\b|\bsame error\b")),
    ("transient", re.compile(r"\btransient\b|\bintermittent\b|\bflaky\b|\bpermanent\b|\bwill (a )?retry\b|"
                             r"\bwould (a )?retry\b|\bretry help\b|\bretrying help\b|\bgo away\b|"
                             r"\bone[- ]off\b|\bblip\b|\bhappen again\b")),
    ("fix", re.compile(r"\b(what|how) (should|do|can|could|would) (i|we) (change|fix|do)\b|"
                       r"\bhow (to|do i) fix\b|\bfix (it|this|that)\b|\bwhat to change\b|"
                       r"\bwhat should change\b|\bsuggest\w*\b|"
                       r"\brecommend\w*\b|\bremed\w*\b|\bprevent\b|\bwhat now\b")),
    ("why", re.compile(r"\bwhy\b|\bwhat went wrong\b|\broot cause\b|\bdiagnos\w*\b|\bexplain\b|\bcause\b|"
                       r"\bwhat happened\b|\bwhat broke\b|\breason\b")),
    ("list", re.compile(r"\b(which|what|list|show|any)\b.{0,30}\b(runs|executions|failures|failed runs)\b|"
                        r"\bwhat failed\b(?!.{0,20}\b(most recently|last|latest)\b)|\bhow many\b")),
    ("status", re.compile(r"\bstatus\b|\bdid\b.{0,60}\b(succeed|pass|work|complete|finish|fail)\w*\b|"
                          r"\bis\b.{0,60}\b(running|done|finished)\b|\bhow did\b|\bhow is\b")),
)
_FAILURE = re.compile(r"\bfail\w*\b|\berror\w*\b|\bbroke\w*\b|\bbreak\w*\b|\bcrash\w*\b|\bwrong\b|\bred\b|"
                      r"\bwhy\b|\bdown\b")
_NEWEST = re.compile(r"\b(most recent(ly)?|latest|last|newest|recent)\b")
_FOLLOW_UP = re.compile(r"\b(it|this|that|the same|its|this run|that run|the run|the failure|the error|"
                        r"this one|that one|them|those)\b")
_HOURS = re.compile(r"\b(?:in |over |during )?the (?:last|past) (\d{1,3}) (minute|hour|day|week)s?\b")


@dataclass(frozen=True, slots=True)
class Window:
    """[since, until) in the clock `now` was given in; `said` is the words that asked for it."""

    since: datetime
    until: datetime
    said: str


@dataclass(frozen=True, slots=True)
class PlaybookRef:
    path: str
    said: str  # the words of the question that named it
    by_word: bool = False  # named only by one of its words (weaker than its path or whole name)


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    intent: Intent | None  # None: nothing but a target (answer by the target's status)
    execution_id: str | None = None
    playbook: PlaybookRef | None = None
    ambiguous: tuple[str, ...] = ()  # several playbooks matched the same words equally well
    window: Window | None = None
    failures: bool = False  # it asks about failed runs
    newest: bool = False  # "the last run", "most recently"
    follow_up: bool = False  # it leans on the conversation ("it", "that run") or names nothing

    @property
    def names_a_target(self) -> bool:
        return bool(self.execution_id or self.playbook or self.window or self.newest or self.ambiguous)


@dataclass(frozen=True, slots=True)
class Playbook:
    """A catalog entry as the matcher sees it."""

    path: str
    name: str | None = None


def read_question(text: str, playbooks: Iterable[Playbook], now: datetime) -> Question:
    """The question's intent and targets (see the module's docstring)."""
    low = " ".join(text.lower().split())
    execution_id = _execution_id(text)
    found, ambiguous = match_playbook(low, playbooks)
    # a playbook's own words ("flaky", "broken_feed") say nothing about what is asked
    rest = _without(low, found.said) if found else low
    intent = _intent(rest)
    window = read_window(low, now)
    newest = bool(_NEWEST.search(low)) and not _HOURS.search(low)
    failures = bool(_FAILURE.search(rest)) or intent in ("why", "fix", "transient", "similar", "propose")
    question = Question(text=text, intent=intent, execution_id=execution_id, playbook=found,
                        ambiguous=ambiguous, window=window, failures=failures, newest=newest)
    follow_up = not question.names_a_target or bool(_FOLLOW_UP.search(low))
    return Question(text=text, intent=intent, execution_id=execution_id, playbook=found, ambiguous=ambiguous,
                    window=window, failures=failures, newest=newest, follow_up=follow_up)


def _without(low: str, said: str) -> str:
    if said in low:
        return low.replace(said, " ")
    words = said.split()
    return " ".join(w for w in _WORD.findall(low) if w not in words)


def _intent(low: str) -> Intent | None:
    for intent, pattern in _INTENT_PATTERNS:
        if pattern.search(low):
            return intent
    return None


def _execution_id(text: str) -> str | None:
    match = EXECUTION_ID.search(text)
    return match.group(1) if match else None


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _contains(words: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(words[i:i + n]) == list(phrase) for i in range(len(words) - n + 1))


def match_playbook(low: str, playbooks: Iterable[Playbook]) -> tuple[PlaybookRef | None, tuple[str, ...]]:
    """The playbook the question names, best match first: its whole path written out, then its name or the
    last part of its path as words ("payments_sync" is "payments sync"), then a distinctive word of it
    ("payments" for "nightly_payments" when no other playbook has that word). Equal best matches: none,
    and the candidates (the caller asks which one)."""
    words = _words(low)
    scored: dict[str, tuple[int, str]] = {}
    entries = list(playbooks)
    word_owners: dict[str, set[str]] = {}
    for entry in entries:
        for word in set(_words(entry.name or "") + _words(entry.path.rsplit("/", 1)[-1])):
            word_owners.setdefault(word, set()).add(entry.path)
    for entry in entries:
        best: tuple[int, str] | None = None
        if entry.path.lower() in low:
            best = (len(entry.path) + 1000, entry.path)
        for label in (entry.name, entry.path.rsplit("/", 1)[-1]):
            phrase = _words(label or "")
            if phrase and _contains(words, phrase):
                candidate = (100 + len(phrase), " ".join(phrase))
                best = candidate if best is None or candidate[0] > best[0] else best
        if best is None:
            own = [w for w in set(_words(entry.name or "") + _words(entry.path.rsplit("/", 1)[-1]))
                   if len(w) >= 4 and w in words and w not in _COMMON]
            distinctive = [w for w in own if word_owners.get(w) == {entry.path}]
            if distinctive:
                best = (10 + len(distinctive), " ".join(sorted(distinctive)))
            elif own:  # a word some other playbook has too: a candidate, never a match alone
                best = (5, " ".join(sorted(own)))
        if best is not None:
            scored[entry.path] = best
    if not scored:
        return None, ()
    top = max(score for score, _ in scored.values())
    winners = sorted(path for path, (score, _) in scored.items() if score == top)
    if len(winners) > 1 or top == 5:
        return None, tuple(winners)
    return PlaybookRef(path=winners[0], said=scored[winners[0]][1], by_word=top < 100), ()


# words too common in questions to pick a playbook by themselves: the questions' own vocabulary ("propose
# that retry" is not about a playbook named http_retry_on_status)
_COMMON = frozenset({
    "last", "night", "run", "runs", "failed", "fail", "fails", "failure", "failures", "what", "why", "that",
    "this", "show", "step", "steps", "data", "test", "tests", "with", "from", "today", "yesterday", "daily",
    "nightly", "hourly", "job", "jobs", "flow", "workflow", "playbook", "execution", "executions", "time",
    "retry", "retries", "propose", "proposal", "proposals", "similar", "transient", "flaky", "permanent",
    "intermittent", "status", "change", "changes", "error", "errors", "root", "cause", "happened", "before",
    "succeed", "success", "approve", "reject", "rollback", "pending", "approval", "latest", "recent",
    "recently", "timeout", "again", "help", "should", "would", "could", "will", "does", "done", "went",
    "wrong", "broke", "broken", "next", "same", "ones", "other", "others", "week", "hours", "morning"})


def read_window(low: str, now: datetime) -> Window | None:
    """The time window a question names, in `now`'s clock (days start at midnight of that clock)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hours = _HOURS.search(low)
    if hours:
        amount, unit = int(hours.group(1)), hours.group(2)
        span = {"minute": timedelta(minutes=amount), "hour": timedelta(hours=amount),
                "day": timedelta(days=amount), "week": timedelta(weeks=amount)}[unit]
        return Window(now - span, now + timedelta(seconds=1), hours.group(0).strip())
    if "last night" in low or "overnight" in low or "tonight" in low:
        return Window(midnight - timedelta(hours=6), midnight + timedelta(hours=8), "last night")
    if "yesterday" in low:
        return Window(midnight - timedelta(days=1), midnight, "yesterday")
    if "this morning" in low:
        return Window(midnight, midnight + timedelta(hours=12), "this morning")
    if re.search(r"\btoday\b", low):
        return Window(midnight, midnight + timedelta(days=1), "today")
    if "last week" in low:
        start = midnight - timedelta(days=midnight.weekday() + 7)
        return Window(start, start + timedelta(days=7), "last week")
    if "this week" in low:
        start = midnight - timedelta(days=midnight.weekday())
        return Window(start, now + timedelta(seconds=1), "this week")
    return None
