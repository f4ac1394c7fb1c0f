/* SPDX-License-Identifier: MIT */
/* multipart_bench.c - EchoFS's multipart parser (src/common/multipart.c)
 * against libmicrohttpd's MHD_PostProcessor, on the same bytes in the same
 * run.
 *
 * A libmicrohttpd daemon on 127.0.0.1 (the master's connection memory
 * limit, 256 KiB) receives a multipart/form-data POST sent by libcurl.
 * Every piece of body that MHD hands the access handler goes to both
 * parsers, in alternating order, each timed on the thread's CPU clock;
 * both copy the file part's bytes into a buffer of their own (as the
 * upload pipeline copies them into its chunk buffer), compared with the
 * sent bytes after the run.
 * Reported per run: CPU time and MiB/s of each, their ratio, and the heap
 * each parser holds (mallinfo2 around its creation). Then a few malformed
 * bodies, to show what each parser says about them.
 *
 *   make -C bench multipart_bench   (needs `make` at the top first)
 *   build/bench/multipart_bench [MiB=64] [runs=3]
 *
 * Not a test: it asserts nothing about speed. It prints what
 * docs/ARCHITECTURE.md ("Why multipart.c and not MHD_PostProcessor")
 * quotes.
 */
#include "echofs/multipart.h"

#include <curl/curl.h>
#include <malloc.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BOUNDARY "----echofsbench7MA4YWxkTrZu0gW"
#define PP_BUFFER (64 * 1024) /* MHD's advice "for good performance" */
#define CONN_MEMORY_LIMIT (256 * 1024)

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}
#define FNV_INIT 14695981039346656037ULL

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What one request's parsing gave, written by the handler. */
struct outcome {
	double mhd_s, efs_s;
	size_t mhd_heap, efs_heap;
	uint64_t mhd_bytes, efs_bytes, mhd_hash, efs_hash;
	char *mhd_sink, *efs_sink; /* where the file part's bytes go */
	size_t sink_size;
	unsigned mhd_calls, efs_calls, feeds;
	int mhd_parts, efs_parts;
	char mhd_filename[128], efs_filename[128];
	int mhd_process_ok, mhd_destroy_ok;
	int efs_result;
	char efs_error[96];
};

struct request {
	struct MHD_PostProcessor *pp;
	struct efs_multipart *mp;
	struct outcome *out;
	char mhd_last_key[64];
	int mhd_in_file;
};

static struct outcome g_out;

static enum MHD_Result mhd_iter(void *cls, enum MHD_ValueKind kind, const char *key,
				const char *filename, const char *content_type,
				const char *transfer_encoding, const char *data, uint64_t off,
				size_t size)
{
	struct request *rq = cls;
	rq->out->mhd_calls++;
	if (off == 0 || strcmp(rq->mhd_last_key, key ? key : "") != 0) {
		rq->out->mhd_parts++;
		snprintf(rq->mhd_last_key, sizeof(rq->mhd_last_key), "%s", key ? key : "");
		if (filename)
			snprintf(rq->out->mhd_filename, sizeof(rq->out->mhd_filename), "%s",
				 filename);
	}
	if (key && strcmp(key, "file") == 0) {
		struct outcome *o = rq->out;
		if (o->mhd_sink && o->mhd_bytes + size <= o->sink_size)
			memcpy(o->mhd_sink + o->mhd_bytes, data, size);
		o->mhd_bytes += size;
	}
	return MHD_YES;
}

static int efs_begin(void *ctx, const char *name, const char *filename, const char *content_type)
{
	struct request *rq = ctx;
	rq->out->efs_parts++;
	rq->mhd_in_file = strcmp(name, "file") == 0;
	if (filename)
		snprintf(rq->out->efs_filename, sizeof(rq->out->efs_filename), "%s", filename);
	return 0;
}

static int efs_data(void *ctx, const char *data, size_t len)
{
	struct request *rq = ctx;
	rq->out->efs_calls++;
	if (rq->mhd_in_file) {
		struct outcome *o = rq->out;
		if (o->efs_sink && o->efs_bytes + len <= o->sink_size)
			memcpy(o->efs_sink + o->efs_bytes, data, len);
		o->efs_bytes += len;
	}
	return 0;
}

static const struct efs_multipart_callbacks efs_cb = {efs_begin, efs_data, NULL};

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_data_size, void **con_cls)
{
	struct request *rq = *con_cls;
	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		rq->out = &g_out;
		char *mhd_sink = g_out.mhd_sink, *efs_sink = g_out.efs_sink;
		size_t sink_size = g_out.sink_size;
		memset(rq->out, 0, sizeof(*rq->out));
		g_out.mhd_sink = mhd_sink;
		g_out.efs_sink = efs_sink;
		g_out.sink_size = sink_size;
		size_t before = heap_in_use();
		rq->pp = MHD_create_post_processor(conn, PP_BUFFER, mhd_iter, rq);
		rq->out->mhd_heap = heap_in_use() - before;
		before = heap_in_use();
		if (efs_multipart_new(BOUNDARY, &efs_cb, rq, &rq->mp) != 0)
			return MHD_NO;
		rq->out->efs_heap = heap_in_use() - before;
		rq->out->mhd_process_ok = 1;
		*con_cls = rq;
		return rq->pp ? MHD_YES : MHD_NO;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		struct outcome *o = rq->out;
		/* Alternate who reads the piece first (and so who pays for
		 * bringing it into the cache). */
		for (int k = 0; k < 2; k++) {
			if ((k == 0) == (o->feeds % 2 == 0)) {
				double t = thread_cpu_s();
				if (o->mhd_process_ok && MHD_post_process(rq->pp, upload_data, n) != MHD_YES)
					o->mhd_process_ok = 0;
				o->mhd_s += thread_cpu_s() - t;
			} else {
				double t = thread_cpu_s();
				if (o->efs_result == 0)
					o->efs_result = efs_multipart_feed(rq->mp, upload_data, n);
				o->efs_s += thread_cpu_s() - t;
			}
		}
		o->feeds++;
		*upload_data_size = 0;
		return MHD_YES;
	}
	struct outcome *o = rq->out;
	o->mhd_destroy_ok = MHD_destroy_post_processor(rq->pp) == MHD_YES;
	if (o->mhd_sink && o->mhd_bytes <= o->sink_size)
		o->mhd_hash = fnv(FNV_INIT, o->mhd_sink, o->mhd_bytes);
	if (o->efs_sink && o->efs_bytes <= o->sink_size)
		o->efs_hash = fnv(FNV_INIT, o->efs_sink, o->efs_bytes);
	if (o->efs_result == 0)
		o->efs_result = efs_multipart_finish(rq->mp);
	snprintf(o->efs_error, sizeof(o->efs_error), "%s", efs_multipart_error(rq->mp));
	efs_multipart_free(rq->mp);
	free(rq);
	*con_cls = NULL;
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result r = MHD_queue_response(conn, 200, resp);
	MHD_destroy_response(resp);
	return r;
}

static int post(uint16_t port, const char *body, size_t len)
{
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/upload", port);
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, "Content-Type: multipart/form-data; boundary=" BOUNDARY);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc == CURLE_OK ? 0 : -1;
}

/* One file part of @mib MiB of pseudo-random bytes (a CR about every 256
 * bytes, so the delimiter search is exercised), then the closing line. */
static char *big_body(size_t mib, size_t *len, uint64_t *hash)
{
	static const char head[] = "--" BOUNDARY "\r\n"
				   "Content-Disposition: form-data; name=\"file\"; "
				   "filename=\"big.bin\"\r\n"
				   "Content-Type: application/octet-stream\r\n\r\n";
	static const char tail[] = "\r\n--" BOUNDARY "--\r\n";
	size_t data = mib << 20;
	*len = sizeof(head) - 1 + data + sizeof(tail) - 1;
	char *b = malloc(*len);
	if (!b)
		return NULL;
	memcpy(b, head, sizeof(head) - 1);
	uint64_t x = 88172645463325252ULL;
	char *p = b + sizeof(head) - 1;
	for (size_t i = 0; i < data; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (char)(x >> 32);
	}
	*hash = fnv(FNV_INIT, p, data);
	memcpy(p + data, tail, sizeof(tail) - 1);
	return b;
}

static void malformed(uint16_t port, const char *label, const char *body)
{
	if (post(port, body, strlen(body)) < 0) {
		printf("  %-34s request failed\n", label);
		return;
	}
	printf("  %-34s efs: %-4d %-32s | mhd: process %s, destroy %s, file %s\n", label,
	       g_out.efs_result, g_out.efs_result ? g_out.efs_error : "ok",
	       g_out.mhd_process_ok ? "YES" : "NO", g_out.mhd_destroy_ok ? "YES" : "NO",
	       g_out.mhd_filename[0] ? g_out.mhd_filename : "(none)");
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	int runs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 3;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0,
		NULL, NULL, handler, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)CONN_MEMORY_LIMIT, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "cannot start the daemon\n");
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	uint16_t port = info ? info->port : 0;

	size_t len;
	uint64_t want;
	char *body = big_body(mib, &len, &want);
	g_out.sink_size = mib << 20;
	g_out.mhd_sink = malloc(g_out.sink_size);
	g_out.efs_sink = malloc(g_out.sink_size);
	if (!body || !port || !g_out.mhd_sink || !g_out.efs_sink)
		return 1;
	/* Touch the sinks once, so that no run pays for faulting them in. */
	memset(g_out.mhd_sink, 0, g_out.sink_size);
	memset(g_out.efs_sink, 0, g_out.sink_size);
	printf("multipart_bench: %zu MiB file part, MHD pieces from a %d KiB connection pool,"
	       " PostProcessor buffer %d KiB\n",
	       mib, CONN_MEMORY_LIMIT / 1024, PP_BUFFER / 1024);
	/* Run 0 warms up (caches, the allocator, the sockets): not reported. */
	for (int run = 0; run <= runs; run++) {
		if (post(port, body, len) < 0) {
			fprintf(stderr, "POST failed\n");
			return 1;
		}
		struct outcome *o = &g_out;
		double mb = (double)mib;
		if (run == 0)
			continue;
		printf("run %d: %u pieces | efs %.3f s %.0f MiB/s, %u callbacks, heap %zu B, %s | "
		       "mhd %.3f s %.0f MiB/s, %u callbacks, heap %zu B, %s | efs/mhd time %.2f\n",
		       run, o->feeds, o->efs_s, mb / o->efs_s, o->efs_calls, o->efs_heap,
		       o->efs_bytes == mib << 20 && o->efs_hash == want && o->efs_result == 0
			       ? "bytes ok" : "BYTES WRONG",
		       o->mhd_s, mb / o->mhd_s, o->mhd_calls, o->mhd_heap,
		       o->mhd_bytes == mib << 20 && o->mhd_hash == want ? "bytes ok" : "BYTES WRONG",
		       o->efs_s / o->mhd_s);
	}
	free(body);
	free(g_out.mhd_sink);
	free(g_out.efs_sink);
	g_out.mhd_sink = g_out.efs_sink = NULL;

	printf("malformed or unusual bodies (efs: result, efs_multipart_error | mhd: "
	       "MHD_post_process, MHD_destroy_post_processor, filename seen):\n");
#define P "--" BOUNDARY
	malformed(port, "well-formed, for reference",
		  P "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
		    "abc\r\n" P "--\r\n");
	malformed(port, "no closing boundary",
		  P "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
		    "abc");
	malformed(port, "part without Content-Disposition",
		  P "\r\nContent-Type: text/plain\r\n\r\nabc\r\n" P "--\r\n");
	malformed(port, "junk after a boundary",
		  P "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
		    "abc\r\n" P "junk\r\n" P "--\r\n");
	malformed(port, "filename*=UTF-8'' only (RFC 5987)",
		  P "\r\nContent-Disposition: form-data; name=\"file\"; "
		    "filename*=UTF-8''%E2%82%AC.txt\r\n\r\nabc\r\n" P "--\r\n");
	malformed(port, "header line without a colon",
		  P "\r\nContent-Disposition: form-data; name=\"file\"\r\nbogus\r\n\r\nabc\r\n" P
		    "--\r\n");
	{
		/* A 20 KiB header line: past our 8 KiB cap. */
		static char big[24 * 1024];
		int n = snprintf(big, sizeof(big),
				 P "\r\nContent-Disposition: form-data; name=\"file\"; "
				   "filename=\"a.txt\"\r\nX-Pad: ");
		memset(big + n, 'x', 20 * 1024);
		snprintf(big + n + 20 * 1024, sizeof(big) - (size_t)n - 20 * 1024,
			 "\r\n\r\nabc\r\n" P "--\r\n");
		malformed(port, "20 KiB header line", big);
	}
	{
		/* 100 parts: past our cap of 64. */
		static char many[100 * 96 + 64];
		size_t off = 0;
		for (int i = 0; i < 100; i++)
			off += (size_t)snprintf(many + off, sizeof(many) - off,
						P "\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\n"
						  "v\r\n",
						i);
		snprintf(many + off, sizeof(many) - off, P "--\r\n");
		malformed(port, "100 parts", many);
	}
	MHD_stop_daemon(d);
	curl_global_cleanup();
	return 0;
}
