-- 006: infonchat.uuid_v7() without gen_random_uuid() and numeric.
--
-- Why: inbox-worker calls it four times for every event routed to an
-- agent (the chat, the run and the two outbox rows).  003's version took a
-- random UUIDv4 from gen_random_uuid() (the strong random source, about
-- 1.3 us a call), overlaid the time computed in numeric and set its bits in
-- bytea: about 2.5 us a call.  This one computes the time in float8 and
-- takes the random bits from random(): about 0.9 us.
--
-- What stays: RFC 9562 layout (48-bit Unix milliseconds, version 7,
-- variant 10), 74 random bits (12 in rand_a, 62 in rand_b), ids of one
-- millisecond in random order.  What changes: the random bits come from the
-- session's random() generator (PostgreSQL seeds it from the strong random
-- source when a session first uses it) rather than from the strong random
-- source.  These ids are keys, unique, not secrets; no one is granted
-- anything by knowing one.  A session that calls setseed() makes its later
-- ids repeatable: only inbox-worker's connections route, and they never do.
create or replace function infonchat.uuid_v7()
returns uuid
language sql volatile parallel safe as $$
    select encode(
        int8send((floor(date_part('epoch', clock_timestamp()) * 1000)::int8 << 16)
                 | 28672                                   -- version 7
                 | ((random() * 4096)::int8 & 4095))       -- rand_a
        || int8send(x'8000000000000000'::int8              -- variant 10
                 | (((random() * 2147483648)::int8 & 2147483647) << 31)
                 | ((random() * 2147483648)::int8 & 2147483647)),  -- rand_b
        'hex')::uuid
$$;
