-- Conversations of the chat over the event log (agents/chat): each belongs to the identity that began it
-- (`token:<id>`, `local:<user>`); `focus` is what its questions point at so far (an execution, a playbook,
-- the last diagnosis), so that a follow-up ("is it transient?") needs no id. Each question and its answer
-- is one row of chat_messages, numbered per conversation.
CREATE TABLE chat_conversations (
    conversation_id text PRIMARY KEY,
    owner           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    focus           jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX chat_conversations_by_owner ON chat_conversations (owner, updated_at DESC);

CREATE TABLE chat_messages (
    conversation_id text NOT NULL REFERENCES chat_conversations (conversation_id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    question        text NOT NULL,
    answer          jsonb NOT NULL,
    asked_by        text NOT NULL,
    asked_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (conversation_id, seq)
);
