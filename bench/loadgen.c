/* SPDX-License-Identifier: MIT */
/* loadgen.c - the benchmark's load generator and test-data generator.
 *
 *   loadgen upload   --url BASE --token T [--size 4096] [--ids-out FILE]
 *   loadgen download --url BASE --token T --ids FILE [--size N]
 *   loadgen get      --url URL [--size N]
 *   loadgen s3put    --url S3BASE --bucket B --s3-user ID:SECRET [--region R]
 *                    [--size 4096] [--ids-out FILE]
 *   loadgen s3get    --url S3BASE --bucket B --s3-user ID:SECRET [--region R]
 *                    --ids FILE [--size N]
 *       s3put, s3get: [--signer curl|cached]
 *       common: [--concurrency 16] [--seconds 20] [--seed N]
 *   loadgen gen      --kind random|text --size BYTES [--seed N]
 *
 * The three load modes keep --concurrency requests in flight for --seconds:
 * one curl easy handle per slot, all driven by one curl multi handle, so
 * every slot keeps its keep-alive connection and starts its next request
 * the moment the previous one completes (closed loop). Requests still in
 * flight at the deadline are waited for and counted; the duration runs to
 * the last completion. The result is one JSON object on stdout: ops,
 * ops_per_s, MiB/s, latency percentiles (ms, nearest rank), errors and
 * the first error's text.
 *
 * upload   POSTs a fresh random body to BASE/api/v1/files/upload?name=...
 *          (so deduplication never short-cuts it) and writes each new
 *          file_id, one a line, to --ids-out.
 * download GETs BASE/api/v1/files/ID/download for ids drawn at random from
 *          --ids; with --size, a body of another length counts as an error.
 * get      GETs URL (the nginx baseline); --size as for download.
 * s3put    PUTs a fresh random body to S3BASE/B/bench-small/PID-N through an
 *          S3 endpoint (EchoFS's S3_PORT listener), SigV4-signed by libcurl
 *          (CURLOPT_AWS_SIGV4, x-amz-content-sha256: UNSIGNED-PAYLOAD, the
 *          region --region, default us-east-1), and writes each key to
 *          --ids-out: the S3 twin of upload, same client, same bodies.
 * s3get    GETs S3BASE/B/KEY for keys drawn at random from --ids, signed as
 *          s3put: the S3 twin of download.
 *          --signer cached signs in loadgen instead, as the AWS SDKs do: the
 *          derived signing key (four HMACs) made once per day and reused,
 *          then per request one SHA-256 of the canonical request and one
 *          HMAC (SignedHeaders host;x-amz-content-sha256;x-amz-date). The
 *          server checks the same signature either way; only the client's
 *          CPU per request differs (libcurl derives the key every time).
 * gen      writes BYTES of test data to stdout, streaming: "random" is
 *          xoshiro256** output (incompressible), "text" is English-like
 *          prose: Zipf-weighted phrases of common words (ISA-L gzip
 *          level 1 on 1 MiB chunks saves ~4x).
 *          The same --seed gives the same bytes.
 *
 * Uses libcurl, libcrypto (the cached signer's SHA-256 and HMAC) and the C
 * library (and the project's banned.h).
 */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "echofs/banned.h"

#define MAX_CONCURRENCY 1024
#define RESP_CAP 4096		/* response bytes kept per request (ids, errors) */
#define MAX_SAMPLES (32u << 20) /* latencies kept; later ones are only counted */
#define URL_CAP 2048
#define ID_CAP 65
#define KEY_CAP 256 /* an s3put key: bench-small/PID-N */
#define REQUEST_TIMEOUT_S 120L
#define GEN_BLOCK (1u << 20)

enum mode { MODE_UPLOAD, MODE_DOWNLOAD, MODE_GET, MODE_GEN, MODE_S3PUT, MODE_S3GET };

struct options {
	enum mode mode;
	const char *url;
	const char *token;
	const char *ids_in;
	const char *ids_out;
	const char *kind;
	const char *bucket;  /* s3put, s3get */
	const char *s3_user; /* ID:SECRET */
	const char *region;
	bool cached_signer; /* --signer cached */
	uint64_t size;
	unsigned concurrency;
	double seconds;
	uint64_t seed;
};

/* xoshiro256** (Blackman and Vigna), seeded through splitmix64. */
struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

static void rng_fill(struct rng *r, char *out, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = rng_next(r);
		memcpy(out + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = rng_next(r);
		memcpy(out + i, &v, len - i);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- test data ---------------------------------------------------------- */

/* Common English words, most frequent first, separated by single spaces
 * (phrases draw them with Zipf weights 1/rank). */
static const char word_list[] =
    "the of and to a in is it you that he was for on are with as his they be at one have "
    "this from or had by hot word but what some we can out other were all there when up "
    "use your how said an each she which do their time if will way about many then them "
    "write would like so these her long make thing see him two has look more day could "
    "go come did number sound no most people my over know water than call first who may "
    "down side been now find any new work part take get place made live where after back "
    "little only round man year came show every good me give our under name very through "
    "just form sentence great think say help low line differ turn cause much mean before "
    "move right boy old too same tell does set three want air well also play small end "
    "put home read hand port large spell add even land here must big high such follow "
    "act why ask men change went light kind off need house picture try us again animal "
    "point mother world near build self earth father head stand own page should country "
    "found answer school grow study still learn plant cover food sun four between state "
    "keep eye never last let thought city tree cross farm hard start might story saw far "
    "sea draw left late run while press close night real life few north open seem "
    "together next white children begin got walk example ease paper group always music "
    "those both mark often letter until mile river car feet care second book carry took "
    "science eat room friend began idea fish mountain stop once base hear horse cut sure "
    "watch color face wood main enough plain girl usual young ready above ever red list "
    "though feel talk bird soon body dog family direct pose leave song measure door "
    "product black short numeral class wind question happen complete ship area half rock "
    "order fire south problem piece told knew pass since top whole king space heard best "
    "hour better true during hundred five remember step early hold west ground interest "
    "reach fast verb sing listen six table travel less morning ten simple several vowel "
    "toward war lay against pattern slow center love person money serve appear road map "
    "rain rule govern pull cold notice voice unit power town fine certain fly fall lead "
    "cry dark machine note wait plan figure star box noun field rest correct able pound "
    "done beauty drive stood contain front teach week final gave green oh quick develop "
    "ocean warm free minute strong special mind behind clear tail produce fact street "
    "inch multiply nothing course stay wheel full force blue object decide surface deep "
    "moon island foot system busy test record boat common gold possible plane stead dry "
    "wonder laugh thousand ago ran check game shape equate miss brought heat snow tire "
    "bring yes distant fill east paint language among";
#define MAX_WORDS 1024
#define ZIPF_TABLE 65536
/* Tuned so that ISA-L level 1 on 1 MiB chunks (the master's codec) saves
 * about 4x (3.98x measured); gzip -6 on the whole file 5.5x. */
#define PHRASE_COUNT 1024
#define ZIPF_S 1.05
#define PHRASE_CAP 64

/* Text is drawn phrase by phrase: PHRASE_COUNT phrases of 2-6 words made
 * once from the word list, then picked with Zipf weights. Repeated phrases
 * give LZ77 the longer matches real prose and logs have. */
struct text_gen {
	struct rng rng;
	const char *words[MAX_WORDS];
	unsigned char word_lengths[MAX_WORDS];
	size_t word_count;
	uint16_t zipf[ZIPF_TABLE]; /* uniform 16-bit value -> rank */
	char phrases[PHRASE_COUNT][PHRASE_CAP];
	unsigned char lengths[PHRASE_COUNT];
	unsigned sentence_left;
	unsigned line_len;
	bool capital;
};

/* Fills table with ranks 0..count-1 drawn with weight 1/(rank+1)^exponent:
 * slot u holds the first rank whose cumulative probability reaches
 * (u + 0.5) / ZIPF_TABLE. */
static void zipf_table(uint16_t *table, size_t count, double exponent)
{
	double total = 0;
	for (size_t i = 0; i < count; i++)
		total += pow((double)(i + 1), -exponent);
	size_t rank = 0;
	double cdf = 1.0 / total;
	for (size_t slot = 0; slot < ZIPF_TABLE; slot++) {
		double u = ((double)slot + 0.5) / ZIPF_TABLE;
		while (rank < count - 1 && cdf < u) {
			rank++;
			cdf += pow((double)(rank + 1), -exponent) / total;
		}
		table[slot] = (uint16_t)rank;
	}
}

static void text_gen_init(struct text_gen *g, uint64_t seed)
{
	g->word_count = 0;
	for (const char *w = word_list; *w && g->word_count < MAX_WORDS;) {
		size_t n = strcspn(w, " ");
		g->words[g->word_count] = w;
		g->word_lengths[g->word_count++] = (unsigned char)n;
		w += n;
		w += *w == ' ';
	}
	rng_seed(&g->rng, seed);
	zipf_table(g->zipf, g->word_count, 1.0);
	for (size_t p = 0; p < PHRASE_COUNT; p++) {
		uint64_t r = rng_next(&g->rng);
		unsigned n_words = 2 + (unsigned)(r % 5);
		size_t len = 0;
		for (unsigned i = 0; i < n_words; i++) {
			unsigned idx = g->zipf[rng_next(&g->rng) & 0xffff];
			const char *w = g->words[idx];
			size_t n = g->word_lengths[idx];
			if (len + n + 1 >= PHRASE_CAP)
				break;
			if (len)
				g->phrases[p][len++] = ' ';
			memcpy(g->phrases[p] + len, w, n);
			len += n;
		}
		g->lengths[p] = (unsigned char)len;
	}
	zipf_table(g->zipf, PHRASE_COUNT, ZIPF_S);
	g->sentence_left = 0;
	g->line_len = 0;
	g->capital = true;
}

/* Appends one phrase and what follows it to out (at least PHRASE_CAP + 3
 * bytes free); returns the bytes written. */
static size_t text_gen_phrase(struct text_gen *g, char *out)
{
	uint64_t r = rng_next(&g->rng);
	unsigned idx = g->zipf[r & 0xffff];
	size_t n = g->lengths[idx];
	memcpy(out, g->phrases[idx], n);
	if (g->capital && out[0] >= 'a' && out[0] <= 'z')
		out[0] = (char)(out[0] - 'a' + 'A');
	g->capital = false;
	if (g->sentence_left == 0)
		g->sentence_left = 2 + (unsigned)((r >> 16) % 5);
	if (--g->sentence_left == 0) {
		out[n++] = ((r >> 24) & 7) == 0 ? '?' : '.';
		g->capital = true;
	} else if (((r >> 27) & 7) == 0) {
		out[n++] = ',';
	}
	g->line_len += (unsigned)n + 1;
	if (g->line_len > 72) {
		out[n++] = '\n';
		g->line_len = 0;
		/* a blank line (paragraph) now and then */
		if (g->capital && ((r >> 31) & 7) == 0)
			out[n++] = '\n';
	} else {
		out[n++] = ' ';
	}
	return n;
}

static int run_gen(const struct options *o)
{
	char *block = malloc(GEN_BLOCK + PHRASE_CAP + 3);
	struct text_gen *g = NULL;
	struct rng rng;
	uint64_t left = o->size;
	bool text = strcmp(o->kind, "text") == 0;
	int r = 0;

	if (!block)
		return -ENOMEM;
	if (text) {
		if (!(g = malloc(sizeof(*g)))) {
			r = -ENOMEM;
			goto out;
		}
		text_gen_init(g, o->seed);
	} else {
		rng_seed(&rng, o->seed);
	}
	while (left > 0) {
		size_t want = left < GEN_BLOCK ? (size_t)left : GEN_BLOCK;
		size_t have = 0;
		if (text) {
			/* Words straddling the block end are cut; the
			 * generator's state carries on in the next block. */
			while (have < want)
				have += text_gen_phrase(g, block + have);
		} else {
			rng_fill(&rng, block, want);
		}
		if (fwrite(block, 1, want, stdout) != want) {
			r = -EIO;
			goto out;
		}
		left -= want;
	}
	if (fflush(stdout) != 0)
		r = -EIO;
out:
	free(g);
	free(block);
	return r;
}

/* ---- load --------------------------------------------------------------- */

struct slot {
	struct loadgen *lg;
	CURL *easy;
	char *body; /* upload: the request body */
	char resp[RESP_CAP + 1];
	size_t resp_len;
	uint64_t resp_bytes;
	double started;
	char url[URL_CAP];
	char key[KEY_CAP];		   /* s3put: the key being written */
	struct curl_slist *signed_headers; /* --signer cached: this request's */
};

struct loadgen {
	const struct options *o;
	CURLM *multi;
	struct curl_slist *headers;
	struct slot *slots;
	struct rng rng;
	char (*ids)[KEY_CAP];
	size_t id_count;
	FILE *ids_out;
	uint64_t seq;
	/* results */
	double *samples;
	size_t sample_count, sample_cap;
	uint64_t ops, errors, bytes_up, bytes_down;
	double latency_sum_ms;
	char first_error[512];
	/* --signer cached: the signing key of day signing_day (YYYYMMDD) */
	char signing_day[9];
	unsigned char signing_key[32];
	char host[256]; /* the Host header libcurl sends: the URL's authority */
	char key_id[128];
	const char *secret;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct slot *s = ctx;
	size_t len = size * nmemb;
	size_t room = RESP_CAP - s->resp_len;
	size_t keep = len < room ? len : room;
	memcpy(s->resp + s->resp_len, data, keep);
	s->resp_len += keep;
	s->resp_bytes += len;
	return len;
}

static int add_sample(struct loadgen *lg, double ms)
{
	lg->latency_sum_ms += ms;
	if (lg->sample_count == lg->sample_cap) {
		if (lg->sample_cap >= MAX_SAMPLES)
			return 0;
		size_t cap = lg->sample_cap ? lg->sample_cap * 2 : 65536;
		double *grown = realloc(lg->samples, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		lg->samples = grown;
		lg->sample_cap = cap;
	}
	lg->samples[lg->sample_count++] = ms;
	return 0;
}

__attribute__((format(printf, 2, 3))) static void note_error(struct loadgen *lg, const char *fmt,
							     ...)
{
	va_list ap;
	lg->errors++;
	if (lg->first_error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(lg->first_error, sizeof(lg->first_error), fmt, ap);
	va_end(ap);
}

/* Finds "file_id": "..." in a File object; 0 and the id in out, or -ENOENT. */
static int find_file_id(const char *json, char out[ID_CAP])
{
	const char *p = strstr(json, "\"file_id\"");
	if (!p)
		return -ENOENT;
	p += strlen("\"file_id\"");
	while (*p == ' ' || *p == ':')
		p++;
	if (*p++ != '"')
		return -ENOENT;
	size_t n = strcspn(p, "\"");
	if (n == 0 || n >= ID_CAP || p[n] != '"')
		return -ENOENT;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* ---- the cached SigV4 signer (--signer cached) ------------------------ */

static void hex_of(const unsigned char *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * len] = '\0';
}

static void hmac_sha256(const void *key, size_t key_len, const char *msg, unsigned char out[32])
{
	unsigned int len = 32;
	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &len);
}

/* Splits --s3-user into the key id and the secret, and the URL's
 * authority into the Host value. */
static int signer_init(struct loadgen *lg)
{
	const struct options *o = lg->o;
	const char *colon = strchr(o->s3_user, ':');
	const char *authority = strstr(o->url, "://");
	if (!colon || (size_t)(colon - o->s3_user) >= sizeof(lg->key_id) || !authority)
		return -EINVAL;
	memcpy(lg->key_id, o->s3_user, (size_t)(colon - o->s3_user));
	lg->key_id[colon - o->s3_user] = '\0';
	lg->secret = colon + 1;
	authority += 3;
	size_t n = strcspn(authority, "/");
	if (n == 0 || n >= sizeof(lg->host))
		return -EINVAL;
	memcpy(lg->host, authority, n);
	lg->host[n] = '\0';
	return 0;
}

/* The headers of one request to @path ("/bucket/key": bench keys need no
 * percent-encoding) signed with the day's key, derived when the day
 * changes. */
static int sign_request(struct loadgen *lg, struct slot *s, const char *method, const char *path)
{
	const struct options *o = lg->o;
	char amz_date[17], canonical[1024], to_sign[512];
	char canonical_hex[65], signature_hex[65];
	unsigned char digest[32], k[32];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
	if (memcmp(lg->signing_day, amz_date, 8) != 0) {
		char secret[512];
		snprintf(secret, sizeof(secret), "AWS4%s", lg->secret);
		memcpy(lg->signing_day, amz_date, 8);
		lg->signing_day[8] = '\0';
		hmac_sha256(secret, strlen(secret), lg->signing_day, k);
		hmac_sha256(k, 32, o->region, k);
		hmac_sha256(k, 32, "s3", k);
		hmac_sha256(k, 32, "aws4_request", lg->signing_key);
	}
	int n = snprintf(canonical, sizeof(canonical),
			 "%s\n%s\n\nhost:%s\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"
			 "x-amz-date:%s\n\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
			 method, path, lg->host, amz_date);
	if (n < 0 || (size_t)n >= sizeof(canonical))
		return -E2BIG;
	SHA256((const unsigned char *)canonical, (size_t)n, digest);
	hex_of(digest, 32, canonical_hex);
	snprintf(to_sign, sizeof(to_sign), "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s",
		 amz_date, lg->signing_day, o->region, canonical_hex);
	hmac_sha256(lg->signing_key, 32, to_sign, digest);
	hex_of(digest, 32, signature_hex);

	char date_line[64], auth_line[512];
	snprintf(date_line, sizeof(date_line), "x-amz-date: %s", amz_date);
	snprintf(auth_line, sizeof(auth_line),
		 "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s/%s/s3/aws4_request, "
		 "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=%s",
		 lg->key_id, lg->signing_day, o->region, signature_hex);
	const char *lines[] = {"x-amz-content-sha256: UNSIGNED-PAYLOAD", date_line, auth_line,
			       o->mode == MODE_S3PUT ? "Content-Type: application/octet-stream"
						     : NULL};
	struct curl_slist *list = NULL;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]) && lines[i]; i++) {
		struct curl_slist *next = curl_slist_append(list, lines[i]);
		if (!next) {
			curl_slist_free_all(list);
			return -ENOMEM;
		}
		list = next;
	}
	curl_slist_free_all(s->signed_headers);
	s->signed_headers = list;
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, list);
	return 0;
}

static int start_request(struct loadgen *lg, struct slot *s)
{
	const struct options *o = lg->o;

	s->resp_len = 0;
	s->resp_bytes = 0;
	switch (o->mode) {
	case MODE_UPLOAD:
		snprintf(s->url, sizeof(s->url), "%s/api/v1/files/upload?name=bench-%ld-%" PRIu64,
			 o->url, (long)getpid(), lg->seq++);
		rng_fill(&lg->rng, s->body, (size_t)o->size);
		break;
	case MODE_DOWNLOAD:
		snprintf(s->url, sizeof(s->url), "%s/api/v1/files/%s/download", o->url,
			 lg->ids[rng_next(&lg->rng) % lg->id_count]);
		break;
	case MODE_S3PUT:
		snprintf(s->key, sizeof(s->key), "bench-small/%ld-%" PRIu64, (long)getpid(),
			 lg->seq++);
		snprintf(s->url, sizeof(s->url), "%s/%s/%s", o->url, o->bucket, s->key);
		rng_fill(&lg->rng, s->body, (size_t)o->size);
		break;
	case MODE_S3GET:
		snprintf(s->url, sizeof(s->url), "%s/%s/%s", o->url, o->bucket,
			 lg->ids[rng_next(&lg->rng) % lg->id_count]);
		break;
	default:
		snprintf(s->url, sizeof(s->url), "%s", o->url);
		break;
	}
	curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
	if (o->cached_signer) {
		/* s->url is o->url then the path */
		int r = sign_request(lg, s, o->mode == MODE_S3PUT ? "PUT" : "GET",
				     s->url + strlen(o->url));
		if (r < 0)
			return r;
	}
	s->started = now_s();
	return curl_multi_add_handle(lg->multi, s->easy) == CURLM_OK ? 0 : -EIO;
}

static int finish_request(struct loadgen *lg, struct slot *s, CURLcode result)
{
	const struct options *o = lg->o;
	long status = 0;
	int r = 0;

	double ms = (now_s() - s->started) * 1000.0;
	s->resp[s->resp_len] = '\0';
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	if (result != CURLE_OK) {
		note_error(lg, "%s: curl error %d: %s", s->url, (int)result,
			   curl_easy_strerror(result));
		return 0;
	}
	if (status < 200 || status > 299) {
		note_error(lg, "%s: HTTP %ld: %.300s", s->url, status, s->resp);
		return 0;
	}
	bool writes = o->mode == MODE_UPLOAD || o->mode == MODE_S3PUT;
	if (!writes && o->size > 0 && s->resp_bytes != o->size) {
		note_error(lg, "%s: %" PRIu64 " bytes, expected %" PRIu64, s->url, s->resp_bytes,
			   o->size);
		return 0;
	}
	if (o->mode == MODE_UPLOAD) {
		char id[ID_CAP];
		if (find_file_id(s->resp, id) < 0) {
			note_error(lg, "%s: HTTP %ld without a file_id: %.300s", s->url, status,
				   s->resp);
			return 0;
		}
		if (lg->ids_out && fprintf(lg->ids_out, "%s\n", id) < 0)
			return -EIO;
		lg->bytes_up += o->size;
	}
	if (o->mode == MODE_S3PUT) {
		if (lg->ids_out && fprintf(lg->ids_out, "%s\n", s->key) < 0)
			return -EIO;
		lg->bytes_up += o->size;
	}
	lg->bytes_down += s->resp_bytes;
	lg->ops++;
	if ((r = add_sample(lg, ms)) < 0)
		return r;
	return 0;
}

static int read_ids(struct loadgen *lg, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[256];
	size_t cap = 0;
	int r = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, "\r\n");
		line[n] = '\0';
		if (n == 0)
			continue;
		if (n >= KEY_CAP) {
			r = -EINVAL;
			goto out;
		}
		if (lg->id_count == cap) {
			cap = cap ? cap * 2 : 1024;
			char(*grown)[KEY_CAP] = realloc(lg->ids, cap * sizeof(*grown));
			if (!grown) {
				r = -ENOMEM;
				goto out;
			}
			lg->ids = grown;
		}
		memcpy(lg->ids[lg->id_count++], line, n + 1);
	}
	if (lg->id_count == 0)
		r = -ENODATA;
out:
	fclose(f);
	return r;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples; 0 when there are none. */
static double percentile(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);
	return sorted[rank == 0 ? 0 : rank - 1];
}

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void report(const struct loadgen *lg, double duration)
{
	static const char *const names[] = {"upload", "download", "get", "gen", "s3put", "s3get"};
	const struct options *o = lg->o;
	size_t n = lg->sample_count;
	double secs = duration > 0 ? duration : 1e-9;

	qsort(lg->samples, n, sizeof(double), compare_double);
	printf("{\"mode\": \"%s\", \"url\": ", names[o->mode]);
	print_json_string(o->url);
	printf(", \"concurrency\": %u, \"size\": %" PRIu64 ", \"seconds\": %.3f"
	       ", \"ops\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"ops_per_s\": %.1f"
	       ", \"upload_mib_per_s\": %.2f, \"download_mib_per_s\": %.2f"
	       ", \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f"
	       ", \"mean_ms\": %.3f, \"latency_samples\": %zu, \"first_error\": ",
	       o->concurrency, o->size, duration, lg->ops, lg->errors, (double)lg->ops / secs,
	       (double)lg->bytes_up / secs / 1048576.0, (double)lg->bytes_down / secs / 1048576.0,
	       percentile(lg->samples, n, 50), percentile(lg->samples, n, 90),
	       percentile(lg->samples, n, 99), n ? lg->samples[n - 1] : 0.0,
	       lg->ops ? lg->latency_sum_ms / (double)lg->ops : 0.0, n);
	if (lg->first_error[0])
		print_json_string(lg->first_error);
	else
		fputs("null", stdout);
	puts("}");
}

static int setup_slot(struct loadgen *lg, struct slot *s)
{
	const struct options *o = lg->o;

	s->lg = lg;
	if (!(s->easy = curl_easy_init()))
		return -ENOMEM;
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
	if (lg->headers)
		curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, lg->headers);
	if (o->mode == MODE_UPLOAD || o->mode == MODE_S3PUT) {
		if (!(s->body = malloc((size_t)o->size ? (size_t)o->size : 1)))
			return -ENOMEM;
		curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
		curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->size);
	}
	if (o->mode == MODE_S3PUT)
		curl_easy_setopt(s->easy, CURLOPT_CUSTOMREQUEST, "PUT");
	if ((o->mode == MODE_S3PUT || o->mode == MODE_S3GET) && !o->cached_signer) {
		char sigv4[128];
		snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", o->region);
		/* libcurl copies string options. */
		curl_easy_setopt(s->easy, CURLOPT_AWS_SIGV4, sigv4);
		curl_easy_setopt(s->easy, CURLOPT_USERPWD, o->s3_user);
	}
	return 0;
}

static int run_load(const struct options *o)
{
	struct loadgen lg = {.o = o};
	char header[1024];
	unsigned active = 0;
	int r = 0;

	rng_seed(&lg.rng, o->seed ? o->seed : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32);
	bool reads_ids = o->mode == MODE_DOWNLOAD || o->mode == MODE_S3GET;
	bool writes_ids = o->mode == MODE_UPLOAD || o->mode == MODE_S3PUT;
	if (reads_ids && (r = read_ids(&lg, o->ids_in)) < 0) {
		fprintf(stderr, "loadgen: %s: %s\n", o->ids_in,
			r == -ENODATA ? "no ids" : strerror(-r));
		goto out;
	}
	if (writes_ids && o->ids_out && !(lg.ids_out = fopen(o->ids_out, "w"))) {
		r = -errno;
		fprintf(stderr, "loadgen: %s: %s\n", o->ids_out, strerror(errno));
		goto out;
	}
	if (o->token) {
		snprintf(header, sizeof(header), "Authorization: Bearer %s", o->token);
		lg.headers = curl_slist_append(lg.headers, header);
	}
	if (o->mode == MODE_UPLOAD) {
		lg.headers =
		    curl_slist_append(lg.headers, "Content-Type: application/octet-stream");
		lg.headers = curl_slist_append(lg.headers, "Expect:");
	}
	/* No "Expect:" here: libcurl's SigV4 signs every header of the list,
	 * and an emptied one is not sent (the server would miss a signed
	 * header). 4 KiB bodies are below libcurl's 100-continue threshold. */
	if (o->mode == MODE_S3PUT && !o->cached_signer)
		lg.headers =
		    curl_slist_append(lg.headers, "Content-Type: application/octet-stream");
	if ((o->mode == MODE_S3PUT || o->mode == MODE_S3GET) && !o->cached_signer)
		lg.headers =
		    curl_slist_append(lg.headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (o->cached_signer && (r = signer_init(&lg)) < 0) {
		fprintf(stderr, "loadgen: --s3-user must be ID:SECRET and --url a URL\n");
		goto out;
	}
	if (!(lg.multi = curl_multi_init()) ||
	    !(lg.slots = calloc(o->concurrency, sizeof(*lg.slots)))) {
		r = -ENOMEM;
		goto out;
	}
	/* Enough cached connections that no slot ever loses its own. */
	curl_multi_setopt(lg.multi, CURLMOPT_MAXCONNECTS, (long)o->concurrency * 2);
	for (unsigned i = 0; i < o->concurrency; i++)
		if ((r = setup_slot(&lg, &lg.slots[i])) < 0)
			goto out;

	double start = now_s(), deadline = start + o->seconds, last = start;
	for (unsigned i = 0; i < o->concurrency; i++) {
		if ((r = start_request(&lg, &lg.slots[i])) < 0)
			goto out;
		active++;
	}
	while (active > 0) {
		int running = 0, pending = 0;
		CURLMsg *msg;
		if (curl_multi_perform(lg.multi, &running) != CURLM_OK) {
			r = -EIO;
			goto out;
		}
		while ((msg = curl_multi_info_read(lg.multi, &pending))) {
			char *priv = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			CURLcode result = msg->data.result;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			struct slot *s = (struct slot *)priv;
			curl_multi_remove_handle(lg.multi, s->easy);
			if ((r = finish_request(&lg, s, result)) < 0)
				goto out;
			last = now_s();
			if (last < deadline) {
				if ((r = start_request(&lg, s)) < 0)
					goto out;
			} else {
				active--;
			}
		}
		if (active > 0 && curl_multi_poll(lg.multi, NULL, 0, 100, NULL) != CURLM_OK) {
			r = -EIO;
			goto out;
		}
	}
	report(&lg, last - start);
	if (lg.first_error[0])
		fprintf(stderr, "loadgen: %" PRIu64 " errors; first: %s\n", lg.errors,
			lg.first_error);
out:
	if (lg.ids_out && fclose(lg.ids_out) != 0 && r == 0)
		r = -EIO;
	for (unsigned i = 0; lg.slots && i < o->concurrency; i++) {
		if (lg.slots[i].easy) {
			curl_multi_remove_handle(lg.multi, lg.slots[i].easy);
			curl_easy_cleanup(lg.slots[i].easy);
		}
		curl_slist_free_all(lg.slots[i].signed_headers);
		free(lg.slots[i].body);
	}
	free(lg.slots);
	if (lg.multi)
		curl_multi_cleanup(lg.multi);
	curl_slist_free_all(lg.headers);
	free(lg.samples);
	free(lg.ids);
	return r;
}

/* ---- command line ------------------------------------------------------- */

static void usage(FILE *to)
{
	fputs("usage: loadgen upload   --url BASE --token T [--size 4096] [--ids-out FILE]\n"
	      "       loadgen download --url BASE --token T --ids FILE [--size N]\n"
	      "       loadgen get      --url URL [--size N]\n"
	      "       loadgen s3put    --url S3BASE --bucket B --s3-user ID:SECRET [--region R]\n"
	      "                        [--size 4096] [--ids-out FILE]\n"
	      "       loadgen s3get    --url S3BASE --bucket B --s3-user ID:SECRET [--region R]\n"
	      "                        --ids FILE [--size N]\n"
	      "         s3put, s3get: [--signer curl|cached]\n"
	      "         common: [--concurrency 16] [--seconds 20] [--seed N]\n"
	      "       loadgen gen      --kind random|text --size BYTES [--seed N]\n",
	      to);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"token", required_argument, NULL, 't'},
	    {"size", required_argument, NULL, 's'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"seconds", required_argument, NULL, 'd'},
	    {"ids", required_argument, NULL, 'i'},
	    {"ids-out", required_argument, NULL, 'o'},
	    {"kind", required_argument, NULL, 'k'},
	    {"seed", required_argument, NULL, 'r'},
	    {"bucket", required_argument, NULL, 'b'},
	    {"s3-user", required_argument, NULL, 'a'},
	    {"region", required_argument, NULL, 'g'},
	    {"signer", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c;

	if (argc < 2)
		return -EINVAL;
	const char *mode = argv[1];
	if (strcmp(mode, "upload") == 0)
		o->mode = MODE_UPLOAD;
	else if (strcmp(mode, "download") == 0)
		o->mode = MODE_DOWNLOAD;
	else if (strcmp(mode, "get") == 0)
		o->mode = MODE_GET;
	else if (strcmp(mode, "gen") == 0)
		o->mode = MODE_GEN;
	else if (strcmp(mode, "s3put") == 0)
		o->mode = MODE_S3PUT;
	else if (strcmp(mode, "s3get") == 0)
		o->mode = MODE_S3GET;
	else
		return -EINVAL;
	o->concurrency = 16;
	o->seconds = 20;
	o->size = o->mode == MODE_UPLOAD || o->mode == MODE_S3PUT ? 4096 : 0;
	o->region = "us-east-1";
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'u':
			o->url = optarg;
			break;
		case 't':
			o->token = optarg;
			break;
		case 'i':
			o->ids_in = optarg;
			break;
		case 'o':
			o->ids_out = optarg;
			break;
		case 'k':
			o->kind = optarg;
			break;
		case 'b':
			o->bucket = optarg;
			break;
		case 'a':
			o->s3_user = optarg;
			break;
		case 'g':
			o->region = optarg;
			break;
		case 'S':
			if (strcmp(optarg, "cached") == 0)
				o->cached_signer = true;
			else if (strcmp(optarg, "curl") != 0)
				return -EINVAL;
			break;
		case 's':
			if (parse_u64(optarg, &o->size) < 0)
				return -EINVAL;
			break;
		case 'r':
			if (parse_u64(optarg, &o->seed) < 0)
				return -EINVAL;
			break;
		case 'c':
			if (parse_u64(optarg, &v) < 0 || v < 1 || v > MAX_CONCURRENCY)
				return -EINVAL;
			o->concurrency = (unsigned)v;
			break;
		case 'd': {
			char *end;
			o->seconds = strtod(optarg, &end);
			if (end == optarg || *end || !(o->seconds > 0 && o->seconds < 86400))
				return -EINVAL;
			break;
		}
		default:
			return -EINVAL;
		}
	}
	if (optind != argc)
		return -EINVAL;
	switch (o->mode) {
	case MODE_UPLOAD:
		return o->url && o->token && o->size <= (64u << 20) ? 0 : -EINVAL;
	case MODE_DOWNLOAD:
		return o->url && o->token && o->ids_in ? 0 : -EINVAL;
	case MODE_GET:
		return o->url ? 0 : -EINVAL;
	case MODE_S3PUT:
		return o->url && o->bucket && o->s3_user && strchr(o->s3_user, ':') &&
			       strlen(o->region) < 64 && o->size <= (64u << 20)
			   ? 0
			   : -EINVAL;
	case MODE_S3GET:
		return o->url && o->bucket && o->s3_user && strchr(o->s3_user, ':') &&
			       strlen(o->region) < 64 && o->ids_in
			   ? 0
			   : -EINVAL;
	case MODE_GEN:
		return o->kind && (!strcmp(o->kind, "random") || !strcmp(o->kind, "text"))
			   ? 0
			   : -EINVAL;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	struct options o = {0};
	int r;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (parse_options(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	if (o.mode == MODE_GEN) {
		r = run_gen(&o);
		if (r < 0)
			fprintf(stderr, "loadgen gen: %s\n", strerror(-r));
		return r < 0 ? 1 : 0;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("loadgen: curl_global_init failed\n", stderr);
		return 1;
	}
	r = run_load(&o);
	curl_global_cleanup();
	if (r < 0)
		fprintf(stderr, "loadgen: %s\n", strerror(-r));
	return r < 0 ? 1 : 0;
}
