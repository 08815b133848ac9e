"""`noetl ask "QUESTION" [--conversation ID] [--json]`: ask about executions in plain words.

It resolves what the question points at (an execution id, a playbook path or name, "the last run of X",
"what failed most recently", "yesterday", or the conversation's last answer) and answers from the diagnosis,
similar failures and proposals, citing events. Locally it runs the chat in this process (the dev stack's
Postgres, NOETL_PG_DSN or the embedded one; with `noetl dev up` running, its API answers, since its
indexer holds the embeddings index); with NOETL_SERVER_URL set it asks the server (POST /api/chat).
Exit 0 answered, 2 a bad question or an unknown conversation, 3 the store or server unreachable.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from noetl.backend import call


def ask(
    question: Annotated[str, typer.Argument(help="The question, e.g. \"why did the last run of "
                                                 "examples/flaky fail?\"", show_default=False)],
    conversation: Annotated[str | None, typer.Option(
        "--conversation", help="Continue this conversation (its id is printed with each answer).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole answer as JSON.")] = False,
    no_similar: Annotated[bool, typer.Option(
        "--no-similar", help="Skip similar past failures when the chat runs here (loads the embedding "
                             "model).")] = False,
) -> None:
    """Ask why a run failed, is it transient, what to change, similar failures; answers cite events."""
    reply = call(lambda backend: backend.ask(question, conversation, use_similar=not no_similar))
    if as_json:
        print(json.dumps(reply, indent=2, default=str))
        return
    print(reply["answer"])
    print(f"\n(conversation {reply['conversation_id']}: continue it with --conversation "
          f"{reply['conversation_id']})")


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
