-- The outbox envelope (infonchat-envelope(7)) of an event_outbox row, as
-- one line of JSON. inbox-worker passes it on as a hint after its commit and
-- outbox-relay publishes it; both take it from here so the wire format has
-- one definition. data is spliced as stored (json keeps the text as sent),
-- with CR, LF and TAB -- only ever between tokens in valid JSON text --
-- turned into spaces so that the envelope stays on one line.
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
        || '","data":' || translate(o.data::text, E'\r\n\t', '   ')
        || '}'
$$;
