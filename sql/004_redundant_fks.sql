-- 004: drop the foreign keys that only repeat what another one already
-- guarantees, because each is a check the server runs for every row the
-- worker inserts (an executor started per row: in a full pipeline the
-- foreign key checks were about a fifth of the database's CPU).
--
--   chats.workspace_id, agent_runs.workspace_id -> workspaces:
--     their (workspace_id, agent_id) -> agents(workspace_id, id) already
--     says the workspace exists (agents.workspace_id is a foreign key) and
--     that it is the agent's own; deleting a workspace deletes its agents,
--     and that deletes their chats and runs (on delete cascade).
--   event_outbox.workspace_id -> workspaces:
--     event_id -> event_inbox(id) already cascades: deleting a workspace
--     deletes its inbox events, and that deletes their outbox rows.
--
-- What stays checked is everything the contract names (event_inbox and
-- event_outbox's event_id, agents, agent_roles) and the chat of a run.

alter table infonchat.chats drop constraint chats_workspace_id_fkey;
alter table infonchat.agent_runs drop constraint agent_runs_workspace_id_fkey;
alter table infonchat.event_outbox drop constraint event_outbox_workspace_id_fkey;
