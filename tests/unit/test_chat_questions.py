"""Reading a chat question without an LLM: what it asks, and what it points at."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.chat.questions import Playbook, read_question

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
CATALOG = [Playbook("finance/payments_nightly", "payments_nightly"), Playbook("examples/flaky", "flaky"),
           Playbook("ml/risk_scoring", "risk scoring"), Playbook("ml/risk_features", "risk_features"),
           Playbook("ops/log_ingest", None)]


def read(text: str):  # type: ignore[no-untyped-def]
    return read_question(text, CATALOG, NOW)


@pytest.mark.parametrize(("text", "intent"), [
    ("why did it fail?", "why"),
    ("What went wrong with 2241043291894150228?", "why"),
    ("what's the root cause", "why"),
    ("what should I change?", "fix"),
    ("how do I fix this", "fix"),
    ("is it transient?", "transient"),
    ("will a retry help?", "transient"),
    ("is this flaky or permanent", "transient"),
    ("show similar ones", "similar"),
    ("has this happened before?", "similar"),
    ("propose that retry", "propose"),
    ("go ahead and propose the change", "propose"),
    ("any pending proposals?", "proposals"),
    ("what is waiting for approval", "proposals"),
    ("did the flaky run succeed?", "status"),
    ("status of 2241043291894150228", "status"),
    ("which runs failed yesterday?", "list"),
    ("what failed today", "list"),
    ("approve it", "decide"),
    ("reject that proposal", "decide"),
    ("2241043291894150228", None),
])
def test_the_intent_is_read_from_the_question_s_words(text: str, intent: str | None) -> None:
    assert read(text).intent == intent


def test_an_execution_id_written_out_is_the_target_and_not_a_follow_up() -> None:
    q = read("why did 2241043291894150228 fail?")
    assert q.execution_id == "2241043291894150228" and q.names_a_target


def test_a_playbook_is_found_by_its_path_by_its_name_in_words_and_by_a_distinctive_word() -> None:
    assert read("why did finance/payments_nightly fail").playbook.path == "finance/payments_nightly"
    assert read("why did payments nightly fail last night?").playbook.path == "finance/payments_nightly"
    assert read("why did last night's payments run fail?").playbook.path == "finance/payments_nightly"
    assert read("what happened to log_ingest").playbook.path == "ops/log_ingest"


def test_words_shared_by_two_playbooks_are_ambiguous_and_name_both() -> None:
    q = read("why did the risk run fail?")
    assert q.playbook is None and q.ambiguous == ("ml/risk_features", "ml/risk_scoring")


def test_the_full_name_wins_over_a_shared_word() -> None:
    assert read("why did risk scoring fail?").playbook.path == "ml/risk_scoring"


@pytest.mark.parametrize(("text", "since", "until"), [
    ("what failed yesterday", datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)),
    ("why did last night's payments run fail", datetime(2026, 12, 6, 18, tzinfo=UTC),
     datetime(2026, 12, 7, 8, tzinfo=UTC)),
    ("what failed today", datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)),
    ("failures in the last 3 hours", datetime(2026, 12, 7, 12, 30, tzinfo=UTC),
     datetime(2026, 12, 7, 15, 30, 1, tzinfo=UTC)),
])
def test_time_words_become_a_window_in_the_clock_given(text: str, since: datetime, until: datetime) -> None:
    window = read(text).window
    assert window is not None and (window.since, window.until) == (since, until)


def test_a_question_that_names_nothing_leans_on_the_conversation() -> None:
    for text in ("is it transient?", "what should I change?", "show similar ones", "propose that retry"):
        q = read(text)
        assert q.follow_up and not q.names_a_target, text


def test_what_failed_most_recently_asks_for_the_newest_failure_not_a_list() -> None:
    q = read("what failed most recently?")
    assert q.newest and q.failures and q.intent is None and q.names_a_target


def test_asking_about_failures_is_told_apart_from_asking_about_runs() -> None:
    assert read("did the flaky run fail?").failures
    assert not read("how did the flaky run go?").failures


def test_the_question_s_own_words_never_name_a_playbook_that_happens_to_contain_them() -> None:
    catalog = [*CATALOG, Playbook("e2e/http_retry_on_status", "http_retry_on_status"),
               Playbook("ops/similar_users", "similar_users")]
    for text in ("propose that retry", "show similar ones", "is it transient?"):
        q = read_question(text, catalog, NOW)
        assert q.playbook is None and q.follow_up, text


def test_a_playbook_named_by_one_word_is_marked_weaker_than_by_its_name() -> None:
    assert read("why did last night's payments run fail?").playbook.by_word
    assert not read("why did payments nightly fail?").playbook.by_word


def test_a_short_number_in_a_playbook_s_name_is_not_taken_for_an_execution_id() -> None:
    catalog = [*CATALOG, Playbook("chat/orders_sync_12345678", "orders_sync_12345678")]
    q = read_question("why did the last run of orders sync 12345678 fail?", catalog, NOW)
    assert q.execution_id is None and q.playbook is not None
    assert q.playbook.path == "chat/orders_sync_12345678"
