/*
 * fuzz_envelope: arbitrary bytes as an envelope line (what inbox-writer
 * reads from a peer or stdin). Properties: never crashes or reads out of
 * bounds; an accepted line has UUID ids, NUL-free UTF-8 text fields, and
 * payload/headers spans inside the line that are JSON objects.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct envelope e;
	struct buf arena = BUF_INIT;
	const char *why = NULL;

	if (envelope_parse(line, size, &e, &arena, &why) == 0) {
		const char *texts[] = { e.source_kind, e.event_type, e.role,
		    e.source_identifier, e.received_at };
		char canon[UUID_LEN + 1];

		if (uuid_canonical(e.id, strlen(e.id), canon) < 0 || strcmp(canon, e.id) != 0)
			abort();
		for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
			if (texts[i] == NULL || !utf8_valid(texts[i], strlen(texts[i])))
				abort();
		if (e.payload < line || e.payload + e.payload_len > line + size ||
		    json_check_object(e.payload, e.payload_len, PAYLOAD_MAX_DEPTH, NULL, NULL) != JSON_OK)
			abort();
		if (e.headers != NULL && json_check_object(e.headers, e.headers_len, PAYLOAD_MAX_DEPTH, NULL, NULL) != JSON_OK)
			abort();
	} else if (why == NULL) {
		abort();
	}
	buf_free(&arena);
	return 0;
}
