/* SPDX-License-Identifier: MIT */
/* s3_hold.c - an S3 reply whose 200 goes out before the work is done
 * (s3_hold.h). */
#include "master/s3_hold.h"
#include "echofs/log.h"
#include "echofs/ticker.h"
#include "echofs/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DECL_LEN (sizeof(EFS_S3_XML_DECLARATION) - 1)

struct efs_s3_hold {
	atomic_int refs; /* the request's (s->hold) and the reply stream's */
	atomic_bool cancelled;
	int (*run)(struct efs_s3_req *s, void *ctx);
	void *ctx;
	struct efs_s3_req *s;
	pthread_t thread;
	bool started;
	int64_t keepalive_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock. */
	bool done;	     /* run returned: doc is final */
	bool have_doc;	     /* the first document replied */
	unsigned status;     /* that document's status (for the log) */
	struct efs_buf doc;  /* its bytes after the declaration */
	size_t decl_sent;    /* of EFS_S3_XML_DECLARATION, sent first */
	size_t doc_sent;
};

static void hold_unref(struct efs_s3_hold *h)
{
	if (atomic_fetch_sub(&h->refs, 1) != 1)
		return;
	efs_buf_release(&h->doc);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

bool efs_s3_hold_document(struct efs_s3_req *s, unsigned status, struct efs_s3_xml *x)
{
	struct efs_s3_hold *h = s->hold;
	if (!h)
		return false;
	pthread_mutex_lock(&h->lock);
	if (!h->have_doc && x->err == 0 && x->buf.len >= DECL_LEN &&
	    efs_buf_append(&h->doc, x->buf.data + DECL_LEN, x->buf.len - DECL_LEN) == 0) {
		h->have_doc = true;
		h->status = status;
	}
	pthread_mutex_unlock(&h->lock);
	efs_s3_xml_release(x);
	return true;
}

bool efs_s3_hold_cancelled(const struct efs_s3_req *s)
{
	return s->hold && atomic_load(&s->hold->cancelled);
}

static void *hold_main(void *arg)
{
	struct efs_s3_hold *h = arg;
	struct efs_s3_req *s = h->s;
	int r = h->run(s, h->ctx);
	pthread_mutex_lock(&h->lock);
	bool have_doc = h->have_doc;
	pthread_mutex_unlock(&h->lock);
	if (!have_doc && !atomic_load(&h->cancelled)) {
		/* What finish_callback does for an operation that did not reply. */
		if (r == -EAGAIN) {
			efs_s3_error_store(s, r, "held operation");
		} else {
			efs_error("s3 %s %s: the held operation failed: %s (request %s)",
				  s->http->method, s->http->path, strerror(r < 0 ? -r : EIO),
				  s->request_id);
			efs_s3_error(s, 500, "InternalError", "internal error (request %s)",
				     s->request_id);
		}
	}
	pthread_mutex_lock(&h->lock);
	if (!h->have_doc && !atomic_load(&h->cancelled)) {
		/* Not even the fallback could be stored (out of memory): the
		 * body must still say the operation failed, or the client takes
		 * the bare 200 for a success. */
		static const char bare[] = "<Error><Code>InternalError</Code><Message>internal "
					   "error</Message></Error>";
		efs_buf_reset(&h->doc);
		if (efs_buf_append(&h->doc, bare, sizeof(bare) - 1) == 0) {
			h->have_doc = true;
			h->status = 500;
		}
	}
	h->done = true;
	if (h->have_doc && h->status != 200)
		efs_info("s3 request %s: answered 200 at once, then an error document (status "
			 "%u) in the body",
			 s->request_id, h->status);
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* The reply stream: the declaration, a space per keepalive interval while
 * the operation runs, then its document. Blocks up to one interval (a
 * thread per connection: only this connection's thread waits). */
static ssize_t hold_read(void *ctx, uint64_t pos, char *out, size_t max)
{
	struct efs_s3_hold *h = ctx;
	(void)pos;
	ssize_t n = 0;
	pthread_mutex_lock(&h->lock);
	if (h->decl_sent < DECL_LEN) {
		size_t k = EFS_MIN(max, DECL_LEN - h->decl_sent);
		memcpy(out, EFS_S3_XML_DECLARATION + h->decl_sent, k);
		h->decl_sent += k;
		n = (ssize_t)k;
		goto out;
	}
	if (!h->done) {
		struct timespec deadline;
		efs_ticker_deadline(h->keepalive_ms, &deadline);
		while (!h->done &&
		       pthread_cond_timedwait(&h->cond, &h->lock, &deadline) != ETIMEDOUT)
			;
		if (!h->done) {
			out[0] = ' ';
			n = 1;
			goto out;
		}
	}
	size_t k = EFS_MIN(max, h->doc.len - h->doc_sent);
	if (k > 0)
		memcpy(out, h->doc.data + h->doc_sent, k);
	h->doc_sent += k;
	n = (ssize_t)k; /* 0: the end */
out:
	pthread_mutex_unlock(&h->lock);
	return n;
}

static void hold_stream_free(void *ctx)
{
	hold_unref(ctx);
}

int efs_s3_hold_start(struct efs_s3_req *s, int (*run)(struct efs_s3_req *s, void *ctx),
		      void *ctx, int64_t keepalive_ms)
{
	struct efs_s3_hold *h = calloc(1, sizeof(*h));
	int r;
	if (!h)
		return -ENOMEM;
	atomic_init(&h->refs, 1);
	atomic_init(&h->cancelled, false);
	h->run = run;
	h->ctx = ctx;
	h->s = s;
	h->keepalive_ms = EFS_MAX(keepalive_ms, 1);
	efs_buf_init(&h->doc, EFS_S3_XML_MAX);
	if ((r = pthread_mutex_init(&h->lock, NULL)) != 0) {
		free(h);
		return -r;
	}
	if ((r = efs_ticker_cond_init(&h->cond)) < 0) {
		pthread_mutex_destroy(&h->lock);
		free(h);
		return r;
	}
	if ((r = efs_http_add_header(s->http, "Content-Type", "application/xml")) < 0) {
		hold_unref(h);
		return r;
	}
	/* The stream's reference: a reply that cannot be made drops it
	 * (efs_http_reply_stream calls hold_stream_free). */
	atomic_fetch_add(&h->refs, 1);
	if ((r = efs_http_reply_stream(s->http, 200, -1, hold_read, h, hold_stream_free)) < 0) {
		hold_unref(h);
		return r;
	}
	s->hold = h;
	if ((r = pthread_create(&h->thread, NULL, hold_main, h)) != 0) {
		/* The 200 is queued but nothing runs: the body says so. */
		efs_error("s3 request %s: cannot start a thread for the held operation: %s",
			  s->request_id, strerror(r));
		efs_s3_error(s, 503, "SlowDown", "The server is busy; retry the request");
		pthread_mutex_lock(&h->lock);
		h->done = true;
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
	h->started = true;
	return 0;
}

void efs_s3_hold_end(struct efs_s3_req *s)
{
	struct efs_s3_hold *h = s->hold;
	if (!h)
		return;
	atomic_store(&h->cancelled, true);
	if (h->started)
		pthread_join(h->thread, NULL);
	s->hold = NULL;
	hold_unref(h);
}
