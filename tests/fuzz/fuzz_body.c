/*
 * fuzz_body: a request body through everything ingest-httpd does with it.
 * Properties checked: the validator never reads out of bounds or hangs;
 * an accepted object always yields fields and an envelope line that
 * envelope_parse() accepts back with the payload bytes unchanged (but for
 * CR/LF/TAB between tokens); escaped text is always valid UTF-8.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "json.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct json_span payload;
	struct fields f;
	struct field_inputs in;
	struct envelope e, back;
	struct buf line = BUF_INIT, arena = BUF_INIT, esc = BUF_INIT, role = BUF_INIT;
	const char *why;

	/* Whatever the bytes, escaping them gives valid UTF-8 JSON. */
	if (json_escape(&esc, text, size) == 0 &&
	    (json_check(esc.p, esc.len, 1, NULL, NULL) != JSON_OK || !utf8_valid(esc.p, esc.len)))
		abort();
	buf_free(&esc);

	if (json_check_object(text, size, PAYLOAD_MAX_DEPTH, &payload, NULL) != JSON_OK)
		return 0;
	memset(&in, 0, sizeof in);
	in.payload = &payload;
	in.source = "fuzz";
	in.workspace_id = "00000000-0000-0000-0000-000000000000";
	fields_init(&f);
	if (fields_resolve(&f, &in) < 0 || role_slug(&role, f.event_type.p, f.event_type.len) < 0)
		abort();
	memset(&e, 0, sizeof e);
	strcpy(e.id, "00000000-0000-7000-8000-000000000000");
	strcpy(e.workspace_id, in.workspace_id);
	e.source = "fuzz";
	e.source_kind = "webhook.fuzz";
	e.event_type = f.event_type.p;
	e.role = role.p;
	e.source_identifier = f.source_identifier.p;
	e.received_at = "2026-11-26T21:09:34.123456Z";
	e.payload = payload.start;
	e.payload_len = payload.len;
	if (envelope_build(&line, &e) < 0)
		abort();
	if (memchr(line.p, '\n', line.len) != NULL)
		abort();
	if (envelope_parse(line.p, line.len, &back, &arena, &why) < 0)
		abort();
	if (back.payload_len != payload.len)
		abort();
	for (size_t i = 0; i < payload.len; i++) {
		char a = payload.start[i], b = back.payload[i];
		if (a == '\n' || a == '\r' || a == '\t')
			a = ' ';
		if (a != b)
			abort();
	}
	if (strcmp(back.event_type, f.event_type.p) != 0)
		abort();
	fields_free(&f);
	buf_free(&line);
	buf_free(&arena);
	buf_free(&role);
	return 0;
}
