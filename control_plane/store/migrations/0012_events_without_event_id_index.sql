-- The event log keeps one index less: nothing reads events by `event_id` alone (a reader names the
-- execution, the primary key's first column, and finds an event's id in the rows it reads), and the
-- index cost every append a random b-tree insert (about a seventh of an append's time on a loop's
-- commit groups; docs/performance.md "Session 11").

DROP INDEX IF EXISTS events_by_event_id;
