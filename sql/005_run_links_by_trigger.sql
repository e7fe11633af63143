-- 005: keep the links of chats and agent runs with triggers on the side
-- that deletes, instead of foreign key checks on the side that inserts.
--
-- Why: inbox-worker inserts a chat and a run for every event an agent
-- takes, and each of their five foreign keys cost the server a check per
-- row (an executor started per row, about 5 us each: a fifth of the worker's
-- transaction).  Deletes of agents, chats and inbox rows are rare by
-- comparison, so what the keys did on delete is now done there, once per
-- statement:
--
--   deleting an agent     deletes its chats and runs   (was on delete cascade)
--   deleting a chat       deletes its runs             (was on delete cascade)
--   deleting inbox rows   sets event_id null in chats  (was on delete set null)
--                         and agent runs
--
-- Deleting a workspace deletes its agents (their foreign key stays), and so
-- everything routed.  What the insert checks did is kept by how the only
-- writer works: inbox-worker inserts a chat and its run in one statement,
-- for an event whose inbox row it holds locked (FOR UPDATE), and takes a
-- FOR KEY SHARE lock on each agent it routes to (once per batch, not once
-- per row), so an agent deleted meanwhile is either waited for (its delete
-- then removes the new rows) or no longer matched.  A row inserted by hand
-- is not checked: such a row should name an existing chat, agent and event.
-- Foreign keys that the contract names (event_inbox and event_outbox to
-- their parents, agents, agent_roles) stay.
--
-- Also: agent_run_queued_data() was declared immutable around to_json(),
-- which is stable, so the planner could not inline it and called it as a
-- function for every run (about 3.5 us more each).  It is stable.

alter table infonchat.chats
    drop constraint chats_event_id_fkey,
    drop constraint chats_workspace_id_agent_id_fkey;
alter table infonchat.agent_runs
    drop constraint agent_runs_chat_id_fkey,
    drop constraint agent_runs_event_id_fkey,
    drop constraint agent_runs_workspace_id_agent_id_fkey;

-- Each takes its keys as an array so that the statements probe the indexes
-- (agent_runs_agent_id_idx, chats_agent_id_idx, agent_runs_chat_id_idx,
-- chats_event_id_idx, agent_runs' unique (event_id, agent_id)) however many
-- rows one statement deleted.
create function infonchat.agents_deleted() returns trigger
language plpgsql as $$
begin
    delete from infonchat.agent_runs r
     where r.agent_id = any (array(select o.id from old_rows o));
    delete from infonchat.chats c
     where c.agent_id = any (array(select o.id from old_rows o));
    return null;
end
$$;
create trigger agents_deleted after delete on infonchat.agents
    referencing old table as old_rows
    for each statement execute function infonchat.agents_deleted();

create function infonchat.chats_deleted() returns trigger
language plpgsql as $$
begin
    delete from infonchat.agent_runs r
     where r.chat_id = any (array(select o.id from old_rows o));
    return null;
end
$$;
create trigger chats_deleted after delete on infonchat.chats
    referencing old table as old_rows
    for each statement execute function infonchat.chats_deleted();

create function infonchat.event_inbox_deleted() returns trigger
language plpgsql as $$
begin
    update infonchat.chats c set event_id = null
     where c.event_id = any (array(select o.id from old_rows o));
    update infonchat.agent_runs r set event_id = null
     where r.event_id = any (array(select o.id from old_rows o));
    return null;
end
$$;
create trigger event_inbox_deleted after delete on infonchat.event_inbox
    referencing old table as old_rows
    for each statement execute function infonchat.event_inbox_deleted();

alter function infonchat.agent_run_queued_data(uuid, uuid, uuid, uuid, text) stable;
