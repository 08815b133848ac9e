"""Secrets never leave a tool: by exact value and by key name."""

from __future__ import annotations

from engine.tools.redact import redact, redact_text


def test_every_occurrence_of_a_secret_value_is_masked_recursively() -> None:
    value = {"msg": "login with hunter2 failed (hunter2)", "list": ["x hunter2 y", 3, None],
             "tuple": ("hunter2",), "nested": {"deep": ["a-hunter2-b"]}}
    assert redact(value, ["hunter2"]) == {"msg": "login with *** failed (***)", "list": ["x *** y", 3, None],
                                          "tuple": ("***",), "nested": {"deep": ["a-***-b"]}}


def test_values_of_secret_named_keys_are_masked() -> None:
    value = {"password": "p", "DB_PASSWORD": "q", "X-Api-Key": "k", "Authorization": "Bearer t",
             "access_token": "a", "client_secret": "c", "user": "ann", "max_tokens": 100,
             "token_count": 5, "nested": {"api_key": {"even": "a mapping"}}, "secret": None}
    assert redact(value) == {"password": "***", "DB_PASSWORD": "***", "X-Api-Key": "***",
                             "Authorization": "***", "access_token": "***", "client_secret": "***",
                             "user": "ann", "max_tokens": 100, "token_count": 5,
                             "nested": {"api_key": "***"}, "secret": None}


def test_longer_secrets_are_masked_before_their_substrings() -> None:
    assert redact_text("abc abcdef", ["abc", "abcdef"]) == "*** ***"
    assert redact("key=abcdef", ["abc", "abcdef"]) == "key=***"


def test_the_input_is_left_untouched_and_empty_secrets_ignored() -> None:
    value = {"a": ["s3cret"]}
    assert redact(value, ["s3cret", ""]) == {"a": ["***"]}
    assert value == {"a": ["s3cret"]}
    assert redact("nothing here", ["", None]) == "nothing here"  # type: ignore[list-item]


def test_custom_secret_keys_replace_the_defaults() -> None:
    assert redact({"pin": "1234", "password": "x"}, secret_keys=["pin"]) == {"pin": "***", "password": "x"}
