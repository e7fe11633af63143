-- 003_inbox_worker.sql: what inbox-worker needs besides 001/002.
--
-- The two payloads the worker writes into event_outbox.data are defined
-- here, in SQL, like the outbox envelope itself (002): the worker never
-- formats them in C, so the wire format has one definition each.
--
-- HOW INBOX-WORKER MOVES A ROW (see also the state list in 001)
--
--   claim     select ... from event_inbox where status = 'pending' and
--             next_attempt_at <= now() ... for update skip locked: by the ids
--             of the hints (with their workspace_id), or oldest
--             next_attempt_at first (the sweep).  Several workers never
--             claim the same row; none waits for another.
--   route     in the same statement, hence the same transaction: for every
--             agent of the event's own workspace with an agent_roles.role
--             equal to the event's role or a prefix pattern ending in '*'
--             that matches it, and with no agent_runs row for the event yet
--             (a replay), one chat and one queued agent_run; one
--             event_outbox row with kind = the role and data =
--             infonchat.inbox_envelope(row), unless routed_at says the event
--             has one (replay); one 'agent_run.queued' row per run queued.
--             An agent is thus queued at most once per event however often
--             the event is routed: the check is exact while the inbox row is
--             locked, and unique (event_id, agent_id) fails the batch should
--             anyone else insert a run meanwhile.
--   mark      status 'processed', processed_at now(), routed_at now() if
--             still null; commit.
--   fail      a row whose routing fails alone (the batch is retried row by
--             row, each in a savepoint) gets attempts + 1, last_error and
--             next_attempt_at = now() + backoff, or status 'dead' (and
--             processed_at) once attempts reaches the worker's
--             --max-attempts.  attempts counts failed attempts only.
--   replay    inbox-worker --replay sets chosen rows back to 'pending'
--             (attempts 0, processed_at null, next_attempt_at now()) and
--             routes them; agents that already have a run for the event
--             are not queued again, and the role event is not emitted twice.

-- A UUIDv7 (RFC 9562: 48-bit Unix milliseconds, version 7, variant 10,
-- random rest) like the ids ingest-httpd gives events.  inbox-worker uses it
-- for the outbox rows, chats and agent runs it inserts: time-ordered keys
-- append to the right edge of their primary key indexes instead of touching
-- (and, after a checkpoint, logging whole) random index pages.
create or replace function infonchat.uuid_v7()
returns uuid
language sql volatile parallel safe as $$
    select encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        placing substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint)
                          from 3)
        from 1 for 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- The inbox envelope (infonchat-envelope(7)) rebuilt from an event_inbox
-- row, as json: the data of the role event in event_outbox.  source is
-- derived from source_kind ('webhook.stripe' -> 'stripe'); headers come from
-- the jsonb column (so in jsonb's key order); payload is the json column's
-- text spliced verbatim, never re-serialised (big numbers, key order,
-- duplicate keys and escapes stay as sent).
create or replace function infonchat.inbox_envelope(e infonchat.event_inbox)
returns json
language sql stable parallel safe as $$
    select ('{"v":1,"id":"' || e.id
        || '","workspace_id":"' || e.workspace_id
        || '","source":' || to_json(case when e.source_kind like 'webhook.%'
                                         then substr(e.source_kind, 9)
                                         else e.source_kind end)::text
        || ',"source_kind":' || to_json(e.source_kind)::text
        || ',"event_type":' || to_json(e.event_type)::text
        || ',"role":' || to_json(e.role)::text
        || ',"dedupe_key":' || coalesce(to_json(e.dedupe_key)::text, 'null')
        || ',"source_identifier":' || to_json(e.source_identifier)::text
        || ',"received_at":"'
        || to_char(e.received_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || '","headers":' || e.headers::text
        || ',"payload":' || e.payload::text
        || '}')::json
$$;

-- The data of an 'agent_run.queued' outbox row.  role is the event's role.
create or replace function infonchat.agent_run_queued_data(agent_run_id uuid,
    chat_id uuid, agent_id uuid, event_id uuid, role text)
returns json
language sql immutable parallel safe as $$
    select ('{"agent_run_id":"' || agent_run_id
        || '","chat_id":"' || chat_id
        || '","agent_id":"' || agent_id
        || '","event_id":"' || event_id
        || '","role":' || to_json(role)::text
        || '}')::json
$$;

-- When the event's own outbox row (kind = its role) was written: set on the
-- first successful routing and kept by a replay, so that routing an event
-- again queues runs for newly matching agents but never emits the role
-- event twice.  (Cheaper than looking for the row in event_outbox.)
alter table infonchat.event_inbox add column routed_at timestamptz null;
comment on column infonchat.event_inbox.routed_at is
    'set by inbox-worker when the role event went to event_outbox; a replay keeps it';
-- Rows processed before this migration (by hand: there was no worker) had
-- theirs.
update infonchat.event_inbox set routed_at = processed_at where status = 'processed';

-- Same output as 002's definition, byte for byte; replace() finds no CR, LF
-- or TAB at memchr speed where translate() walks the text character by
-- character (about 8 times slower on a 1 KB payload, and this runs once per
-- outbox row in inbox-worker and again in outbox-relay).
create or replace function infonchat.outbox_envelope(o infonchat.event_outbox)
returns text
language sql stable parallel safe as $$
    select '{"v":1,"seq":' || o.seq
        || ',"id":"' || o.id
        || '","topic":' || to_json(o.topic)::text
        || ',"kind":' || to_json(o.kind)::text
        || ',"workspace_id":"' || o.workspace_id
        || '","event_id":"' || o.event_id
        || '","created_at":"'
        || to_char(o.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || '","data":' || replace(replace(replace(o.data::text,
                                  E'\r', ' '), E'\n', ' '), E'\t', ' ')
        || '}'
$$;

-- Replay of dead events (inbox-worker --replay --status dead) without a
-- scan of the whole inbox; dead rows are few, so this index stays small.
create index event_inbox_dead_idx on infonchat.event_inbox (received_at)
    where status = 'dead';
