#include "metrics.h"

#include <string.h>

#define MAX_CODES 48

static const double bucket_le[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
#define NBUCKETS (sizeof bucket_le / sizeof bucket_le[0])

static unsigned long long by_status[600];
static struct { char code[40]; unsigned long long n; } by_code[MAX_CODES];
static unsigned long long lat_buckets[NBUCKETS], lat_count;
static double lat_sum;

void
metrics_request(int status, const char *error_code)
{
	if (status >= 100 && status < 600)
		by_status[status]++;
	if (error_code == NULL)
		return;
	for (int i = 0; i < MAX_CODES; i++) {
		if (by_code[i].code[0] == '\0') {
			/* First time this code is seen; codes are short static names. */
			strncpy(by_code[i].code, error_code, sizeof by_code[i].code - 1);
		}
		if (strcmp(by_code[i].code, error_code) == 0) {
			by_code[i].n++;
			return;
		}
	}
}

void
metrics_ack_latency(uint64_t ns)
{
	double s = (double)ns / 1e9;

	for (size_t i = 0; i < NBUCKETS; i++)
		if (s <= bucket_le[i])
			lat_buckets[i]++;
	lat_count++;
	lat_sum += s;
}

void
metrics_render(struct buf *out, long in_flight, long connections, int ready)
{
	buf_puts(out, "# HELP infonchat_http_requests_total HTTP requests answered, by status code.\n"
	    "# TYPE infonchat_http_requests_total counter\n");
	for (int s = 100; s < 600; s++)
		if (by_status[s])
			buf_printf(out, "infonchat_http_requests_total{status=\"%d\"} %llu\n", s, by_status[s]);
	buf_puts(out, "# HELP infonchat_http_errors_total Error replies, by error code.\n"
	    "# TYPE infonchat_http_errors_total counter\n");
	for (int i = 0; i < MAX_CODES && by_code[i].code[0]; i++)
		buf_printf(out, "infonchat_http_errors_total{code=\"%s\"} %llu\n", by_code[i].code, by_code[i].n);
	buf_puts(out, "# HELP infonchat_ack_latency_seconds Webhook requests, first byte to reply.\n"
	    "# TYPE infonchat_ack_latency_seconds histogram\n");
	for (size_t i = 0; i < NBUCKETS; i++)
		buf_printf(out, "infonchat_ack_latency_seconds_bucket{le=\"%g\"} %llu\n", bucket_le[i], lat_buckets[i]);
	buf_printf(out, "infonchat_ack_latency_seconds_bucket{le=\"+Inf\"} %llu\n", lat_count);
	buf_printf(out, "infonchat_ack_latency_seconds_sum %.9f\n", lat_sum);
	buf_printf(out, "infonchat_ack_latency_seconds_count %llu\n", lat_count);
	buf_printf(out, "# HELP infonchat_http_in_flight Webhook requests waiting for inbox-writer.\n"
	    "# TYPE infonchat_http_in_flight gauge\ninfonchat_http_in_flight %ld\n", in_flight);
	buf_printf(out, "# HELP infonchat_http_connections Open client connections.\n"
	    "# TYPE infonchat_http_connections gauge\ninfonchat_http_connections %ld\n", connections);
	buf_printf(out, "# HELP infonchat_writer_ready 1 when inbox-writer answers.\n"
	    "# TYPE infonchat_writer_ready gauge\ninfonchat_writer_ready %d\n", ready);
}
