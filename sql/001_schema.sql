-- 001_schema.sql: the infonchat schema (PostgreSQL 13+; developed on 15).
--
-- Applied by `scripts/migrate CONNINFO`, which runs this file in one
-- transaction together with the insert of version '001' into
-- infonchat.schema_migrations.  Never edit an applied migration: add
-- sql/002_*.sql and so on.
--
-- Column names listed in DESIGN.md are the contract.  Every other column has
-- a default, so that an operator's plain INSERT naming only the contract
-- columns works, e.g.
--     insert into infonchat.workspaces(id, name) values ('...', 'acme');
--
-- HOW AN EVENT MOVES THROUGH THE TABLES
--
-- An event is committed to event_inbox before the sender hears 202.  From
-- then on PostgreSQL is the source of truth; ZeroMQ messages between stages
-- are only hints, and every stage also sweeps its table.
--
-- event_inbox.status, one row per accepted event:
--
--   (none) --inbox-writer--> pending
--       inbox-writer inserts the row (status 'pending', attempts 0,
--       next_attempt_at now()) and commits, then ingest-httpd answers 202.
--       A second event with the same (workspace_id, source_kind, dedupe_key)
--       is not inserted; the sender gets the original row's id (a null
--       dedupe_key never collides).
--
--   pending --inbox-worker--> processed
--       inbox-worker claims pending rows whose next_attempt_at has come
--       (select ... for update skip locked), and in ONE transaction: creates
--       a chat and an agent_run for every agent whose agent_roles match the
--       row's role, inserts the event_outbox rows, and sets status
--       'processed', processed_at now().  If that transaction fails or the
--       worker dies, nothing of it is visible and the row is still pending.
--
--   pending --inbox-worker--> pending (retry)
--       when processing a row fails, the worker (in a separate
--       transaction) increments attempts, records last_error and pushes
--       next_attempt_at into the future (backoff), so one bad row never
--       blocks the others.
--
--   pending --inbox-worker--> dead
--       after N failed attempts the row gets status 'dead' (last_error
--       kept, processed_at now()).  Dead rows are never retried
--       automatically; an operator may set them back to 'pending'.
--
--   processed, dead: final.  Retention may delete old rows (index on
--       received_at); their outbox rows go with them (on delete cascade),
--       chats and agent_runs stay and lose the link (event_id set null).
--
-- event_outbox.published_at, one row per message to publish (the event
-- itself, kind = its role, and one 'agent_run.queued' per run queued):
--
--   (none) --inbox-worker--> unpublished (published_at is null)
--       inserted in the same transaction that marks the inbox row
--       processed; seq comes from an identity sequence.
--
--   unpublished --outbox-relay--> published (published_at = now())
--       outbox-relay reads unpublished rows in seq order, PUBlishes each to
--       the router, then sets published_at.  If it dies between the two,
--       the row is published again: delivery is at-least-once and
--       subscribers deduplicate by id.  (seq values are taken at insert but
--       become visible at commit, so a relay must not assume "no row below
--       the highest seq seen is still unpublished".)
--
--   published: final.
--
-- agent_runs.status starts 'queued' (inbox-worker); later states belong to
-- whatever executes the runs.

create schema if not exists infonchat;

-- Bookkeeping of scripts/migrate (which also creates it before running any
-- migration, hence "if not exists").
create table if not exists infonchat.schema_migrations (
    version     text primary key,
    applied_at  timestamptz not null default now()
);

create table infonchat.workspaces (
    id                 uuid primary key default gen_random_uuid(),
    name               text not null default '',
    require_signature  boolean not null default false,
    created_at         timestamptz not null default now()
);
comment on column infonchat.workspaces.require_signature is
    'when true, ingest-httpd rejects (401) events for a source with no secret configured';

create table infonchat.event_inbox (
    id                 uuid primary key default gen_random_uuid(),
    workspace_id       uuid not null references infonchat.workspaces(id) on delete cascade,
    source_kind        text not null,
    event_type         text not null,
    role               text not null,
    source_identifier  text not null,
    dedupe_key         text null,
    headers            jsonb not null default '{}',
    payload            json not null,
    received_at        timestamptz not null default now(),
    status             text not null default 'pending'
                       check (status in ('pending', 'processed', 'dead')),
    attempts           int not null default 0 check (attempts >= 0),
    last_error         text,
    processed_at       timestamptz,
    next_attempt_at    timestamptz not null default now(),
    unique (workspace_id, source_kind, dedupe_key)
);
comment on table infonchat.event_inbox is
    'every accepted event; pending -> processed (or dead) by inbox-worker';
-- The worker's sweep: pending rows that are due, oldest first.
create index event_inbox_pending_idx on infonchat.event_inbox (next_attempt_at)
    where status = 'pending';
-- Retention.
create index event_inbox_received_at_idx on infonchat.event_inbox (received_at);

create table infonchat.event_outbox (
    id            uuid primary key default gen_random_uuid(),
    seq           bigint generated by default as identity not null unique,
    event_id      uuid not null references infonchat.event_inbox(id) on delete cascade,
    workspace_id  uuid not null references infonchat.workspaces(id) on delete cascade,
    kind          text not null,
    topic         text not null,
    data          json not null,
    created_at    timestamptz not null default now(),
    published_at  timestamptz null
);
comment on table infonchat.event_outbox is
    'messages to publish; published_at null -> set by outbox-relay';
-- The relay's sweep: unpublished rows in seq order.
create index event_outbox_unpublished_idx on infonchat.event_outbox (seq)
    where published_at is null;
create index event_outbox_event_id_idx on infonchat.event_outbox (event_id);

create table infonchat.agents (
    id            uuid primary key default gen_random_uuid(),
    workspace_id  uuid not null references infonchat.workspaces(id) on delete cascade,
    name          text not null default '',
    created_at    timestamptz not null default now(),
    -- lets the tables below check that an agent belongs to their workspace
    unique (workspace_id, id)
);

-- role is exact ('webhook.stripe.payment_succeeded') or a prefix pattern
-- ending in '*' ('webhook.stripe.*', 'webhook.*').
create table infonchat.agent_roles (
    workspace_id  uuid not null references infonchat.workspaces(id) on delete cascade,
    agent_id      uuid not null,
    role          text not null check (role <> ''),
    created_at    timestamptz not null default now(),
    primary key (workspace_id, agent_id, role),
    foreign key (workspace_id, agent_id)
        references infonchat.agents(workspace_id, id) on delete cascade
);
create index agent_roles_agent_id_idx on infonchat.agent_roles (agent_id);

-- Each agent run gets a chat of its own.
create table infonchat.chats (
    id            uuid primary key default gen_random_uuid(),
    workspace_id  uuid not null references infonchat.workspaces(id) on delete cascade,
    agent_id      uuid not null,
    event_id      uuid references infonchat.event_inbox(id) on delete set null,
    title         text not null default '',
    created_at    timestamptz not null default now(),
    foreign key (workspace_id, agent_id)
        references infonchat.agents(workspace_id, id) on delete cascade
);
create index chats_event_id_idx on infonchat.chats (event_id);
create index chats_agent_id_idx on infonchat.chats (agent_id);

create table infonchat.agent_runs (
    id            uuid primary key default gen_random_uuid(),
    workspace_id  uuid not null references infonchat.workspaces(id) on delete cascade,
    agent_id      uuid not null,
    chat_id       uuid not null references infonchat.chats(id) on delete cascade,
    event_id      uuid references infonchat.event_inbox(id) on delete set null,
    status        text not null default 'queued' check (status <> ''),
    created_at    timestamptz not null default now(),
    -- reprocessing an event never queues the same agent twice
    unique (event_id, agent_id),
    foreign key (workspace_id, agent_id)
        references infonchat.agents(workspace_id, id) on delete cascade
);
create index agent_runs_chat_id_idx on infonchat.agent_runs (chat_id);
create index agent_runs_agent_id_idx on infonchat.agent_runs (agent_id);

-- Signature secrets per (workspace, source); several rows for one pair are
-- all accepted (rotation).  ingest-httpd re-reads this table at least every
-- 5 seconds.  source is the lower-cased ?source= value ('generic' default).
create table infonchat.webhook_secrets (
    id            uuid primary key default gen_random_uuid(),
    workspace_id  uuid not null references infonchat.workspaces(id) on delete cascade,
    source        text not null default 'generic'
                  check (source ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    scheme        text not null
                  check (scheme in ('standard-webhooks', 'stripe', 'github', 'slack', 'hmac-sha256')),
    secret        text not null check (secret <> ''),
    created_at    timestamptz not null default now()
);
create index webhook_secrets_ws_source_idx on infonchat.webhook_secrets (workspace_id, source);
