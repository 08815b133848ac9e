"""Triggers declared in a playbook (root `triggers:` and `metadata.triggers`), through `noetl validate`'s
own function: what is accepted, what it means, and where a mistake is reported."""

from __future__ import annotations

import pytest

from engine.dsl.model import Playbook
from engine.dsl.triggers import AfterSpec
from engine.net.validate import Validation, validate_text

HEAD = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: t, path: etl/report}\n"
WORKFLOW = "workflow:\n  - step: a\n    tool: {kind: noop}\n"


def validated(triggers: str) -> Validation:
    return validate_text(HEAD + "triggers:\n" + triggers + WORKFLOW)


def playbook_of(result: Validation) -> Playbook:
    assert not result.errors, [d.format() for d in result.diagnostics]
    assert result.loaded.playbook is not None
    return result.loaded.playbook


def test_triggers_at_the_root_and_in_metadata_validate_and_are_all_declared_root_first() -> None:
    result = validate_text(
        "apiVersion: noetl.io/v2\nkind: Playbook\n"
        "metadata:\n  name: t\n  path: etl/report\n  triggers:\n    - {every: 15m, name: often}\n"
        "triggers:\n"
        "  - {cron: '0 2 * * *', tz: Europe/Berlin, catchup: all, catchup_limit: 3, jitter: 30s}\n"
        "  - {webhook: true, concurrency: queue, payload: {body: '{{ request.body }}'}}\n"
        + WORKFLOW)
    declared = playbook_of(result).declared_triggers
    assert [spec.kind for spec in declared] == ["cron", "webhook", "interval"]
    cron, webhook, every = declared
    assert (cron.cron, cron.tz, cron.catchup, cron.catchup_limit, cron.jitter) == \
        ("0 2 * * *", "Europe/Berlin", "all", 3, "30s")
    assert (webhook.concurrency, webhook.payload) == ("queue", {"body": "{{ request.body }}"})
    assert (every.name, every.every) == ("often", "15m")
    assert result.valid(strict=True)


def test_after_with_a_path_alone_means_the_path_completed() -> None:
    [spec] = playbook_of(validated("  - {after: etl/load}\n")).declared_triggers
    assert spec.kind == "after"
    assert spec.after == AfterSpec(path="etl/load", on="completed")


def test_after_in_full_takes_the_status_it_waits_for() -> None:
    [spec] = playbook_of(validated("  - after: {path: etl/load, on: failed}\n")).declared_triggers
    assert spec.after == AfterSpec(path="etl/load", on="failed")


def test_a_time_trigger_defaults_to_catchup_latest_with_a_limit_of_ten_and_concurrency_allow() -> None:
    [spec] = playbook_of(validated("  - {every: 30s}\n")).declared_triggers
    assert (spec.catchup, spec.catchup_limit, spec.concurrency, spec.paused) == ("latest", 10, "allow", False)


@pytest.mark.parametrize(("trigger", "place", "words"), [
    ("  - {cron: '0 2 * * *', every: 1h}\n", "5:5 triggers[0]",
     "a trigger needs exactly one of cron, every, after, subject, webhook: true (got cron, every)"),
    ("  - {name: lonely}\n", "5:5 triggers[0]",
     "a trigger needs exactly one of cron, every, after, subject, webhook: true (got none)"),
    ("  - {every: 1h, tz: UTC}\n", "5:5 triggers[0]", "`tz` applies to a cron trigger only"),
    ("  - {webhook: true, catchup: all}\n", "5:5 triggers[0]",
     "`catchup` applies to cron and every triggers only (this one is webhook)"),
    ("  - {subject: 'orders..created'}\n", "5:15 triggers[0].subject",
     "'orders..created' is not a NATS subject"),
    ("  - {subject: 'orders.>.created'}\n", "5:15 triggers[0].subject",
     "'orders.>.created' is not a NATS subject"),
    ("  - {every: 1h, catchup_limt: 3}\n", "5:17 triggers[0].catchup_limt",
     "unknown key 'catchup_limt'; did you mean 'catchup_limit'?"),
])
def test_a_malformed_trigger_is_refused_with_a_located_message(trigger: str, place: str, words: str) -> None:
    result = validated(trigger)
    [error] = result.errors
    assert error.format().startswith(f"<playbook>:{place}: ")
    assert words in error.message
    assert result.net is None


def test_a_mistake_in_the_second_trigger_names_that_trigger() -> None:
    result = validated("  - {every: 1m}\n  - {webhook: true, catchup: skip}\n")
    [error] = result.errors
    assert (error.line, error.path) == (6, "triggers[1]")


def test_a_mistake_in_a_metadata_trigger_is_reported_under_metadata() -> None:
    result = validate_text("apiVersion: noetl.io/v2\nkind: Playbook\n"
                           "metadata:\n  name: t\n  triggers:\n    - {every: 1h, tz: UTC}\n" + WORKFLOW)
    [error] = result.errors
    assert error.format() == "<playbook>:6:7 metadata.triggers[0]: `tz` applies to a cron trigger only"


def test_a_playbook_without_triggers_declares_none() -> None:
    assert playbook_of(validate_text(HEAD + WORKFLOW)).declared_triggers == []


def test_a_declared_trigger_that_cannot_fire_is_refused_at_its_key_by_validation_and_registration() -> None:
    from control_plane.triggers.definition import with_declared_checks

    text = (HEAD + "  # the declared triggers\ntriggers:\n  - cron: '0 25 * * *'\n  - every: 5m\n"
            "    version: 2\n  - {name: twice, webhook: true}\n  - {name: twice, every: 1h}\n" + WORKFLOW)
    result = with_declared_checks(validate_text(text, "pb.yaml"))
    found = [(d.line, d.path, d.message) for d in result.errors]
    assert [(line, path) for line, path, _ in found] == [
        (6, "triggers[0].cron"), (8, "triggers[1].version"), (10, "triggers[3].name")]
    assert "hour '25' is out of range 0-23" in found[0][2]
    assert "newest version" in found[1][2] and "two triggers are named 'twice'" in found[2][2]
    assert with_declared_checks(validate_text(HEAD + WORKFLOW)).errors == []
