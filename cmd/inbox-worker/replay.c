#include "replay.h"

#include <stdio.h>
#include <string.h>

/*
 * The role filter has the same syntax as agent_roles.role. Rows are returned
 * in received_at order, so a replay routes the oldest first.
 */
static const char mark_sql[] =
    "with chosen as ("
    " update infonchat.event_inbox e set status = 'pending', attempts = 0,"
    "  processed_at = null, next_attempt_at = now()"
    " where e.status = any($1::text[])"
    "  and ($2::uuid is null or e.workspace_id = $2::uuid)"
    "  and ($3::timestamptz is null or e.received_at >= $3::timestamptz)"
    "  and ($4::timestamptz is null or e.received_at < $4::timestamptz)"
    "  and ($5::text is null or e.role = $5::text or (right($5::text, 1) = '*'"
    "   and starts_with(e.role, left($5::text, -1))))"
    " returning e.id, e.workspace_id, e.received_at)"
    " select id, workspace_id from chosen order by received_at, id";

void
replay_init(struct replay *rp)
{
	memset(rp, 0, sizeof *rp);
	snprintf(rp->status, sizeof rp->status, "{processed,dead}");
}

static int
two(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/*
 * timestamp_valid() checks the form; refuse a month 13 or an hour 25 here
 * too, so that such a typo is a usage error rather than a refusal by the
 * database after connecting.
 */
static int
time_ok(const char *s)
{
	return timestamp_valid(s) && two(s + 5) >= 1 && two(s + 5) <= 12 &&
	    two(s + 8) >= 1 && two(s + 8) <= 31 && two(s + 11) <= 23 &&
	    two(s + 14) <= 59 && two(s + 17) <= 60;
}

/* "processed,dead" -> "{processed,dead}"; each name once at most. */
static int
parse_status(const char *arg, char *out, size_t outlen)
{
	static const char *const names[] = { "pending", "processed", "dead" };
	int seen[3] = { 0, 0, 0 };
	size_t o = 0;
	const char *p = arg;

	out[o++] = '{';
	while (*p) {
		size_t len = strcspn(p, ",");
		int k = -1;

		for (int i = 0; i < 3; i++)
			if (strlen(names[i]) == len && strncmp(p, names[i], len) == 0)
				k = i;
		if (k < 0 || seen[k])
			return -1;
		seen[k] = 1;
		if (o + len + 3 > outlen)
			return -1;
		if (o > 1)
			out[o++] = ',';
		memcpy(out + o, p, len);
		o += len;
		p += len;
		if (*p == ',') {
			p++;
			if (*p == '\0')
				return -1;
		}
	}
	if (o == 1)
		return -1;
	out[o++] = '}';
	out[o] = '\0';
	return 0;
}

int
replay_option(struct replay *rp, const char *name, const char *arg,
    const char **err)
{
	if (strcmp(name, "replay") == 0) {
		rp->on = 1;
		return 0;
	}
	if (strcmp(name, "workspace") == 0) {
		if (uuid_canonical(arg, strlen(arg), rp->workspace_id) < 0) {
			*err = "want a UUID";
			return -1;
		}
	} else if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
		if (!time_ok(arg)) {
			*err = "want an RFC 3339 time, e.g. 2026-11-26T21:00:00Z";
			return -1;
		}
		if (name[0] == 's')
			rp->since = arg;
		else
			rp->until = arg;
	} else if (strcmp(name, "role") == 0) {
		if (*arg == '\0') {
			*err = "want a role or a prefix pattern ending in *";
			return -1;
		}
		rp->role = arg;
	} else if (strcmp(name, "status") == 0) {
		if (parse_status(arg, rp->status, sizeof rp->status) < 0) {
			*err = "want a comma-separated list of pending, processed, dead";
			return -1;
		}
	} else {
		return 1;
	}
	rp->any_filter = 1;
	return 0;
}

PGresult *
replay_mark(PGconn *conn, const struct replay *rp, PGresult **failed)
{
	const char *values[5] = {
		rp->status,
		rp->workspace_id[0] ? rp->workspace_id : NULL,
		rp->since, rp->until, rp->role,
	};
	PGresult *r = PQexecParams(conn, mark_sql, 5, NULL, values, NULL, NULL, 0);

	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		*failed = NULL;
		return r;
	}
	*failed = r;
	return NULL;
}
