/* SPDX-License-Identifier: MIT */
/* s3_hold.h - an S3 reply whose 200 goes out before the work is done.
 *
 * S3's CompleteMultipartUpload may take minutes (here: parts that must be
 * copied into new chunks, docs/S3.md "Chunk alignment"). As S3 does, the
 * master then answers 200 at once, sends a space every keepalive interval
 * so that no client's read timeout fires, and ends the body with the
 * operation's document: its result, or an <Error> (a 200 whose body is an
 * error, which S3 clients know to look for on this operation).
 *
 * The operation runs on a thread of its own while the connection's thread
 * sends the spaces; it must not touch s->http (the reply is under way):
 * efs_s3_error and efs_s3_reply_xml put its document in the held body.
 * When the request ends (the client left, or the body went out) the
 * operation is told (efs_s3_hold_cancelled) and waited for, before
 * anything of the request is freed: it may use @s until it returns.
 *
 * For a server with a thread per connection (the master's): the thread
 * serving the connection waits up to one interval for the next piece.
 */
#ifndef ECHOFS_MASTER_S3_HOLD_H
#define ECHOFS_MASTER_S3_HOLD_H

#include "master/s3_routes.h"
#include "master/s3_xml.h"

#include <stdbool.h>
#include <stdint.h>

/* Replies 200 (application/xml, chunked) to @s and starts @run(@s, @ctx)
 * on a new thread; a space goes out every @keepalive_ms until @run
 * returns, then the document it replied. @run returning a negative errno
 * without a document sends S3's InternalError (ServiceUnavailable for
 * -EAGAIN); a thread that cannot start: a SlowDown document. 0; or
 * -errno with no reply made and nothing started (the caller then runs the
 * operation itself; a Content-Type header may have been added). */
int efs_s3_hold_start(struct efs_s3_req *s, int (*run)(struct efs_s3_req *s, void *ctx),
		      void *ctx, int64_t keepalive_ms);

/* True once the request under @s is ending (the client left): a running
 * operation stops at its next check and cleans up. */
bool efs_s3_hold_cancelled(const struct efs_s3_req *s);

/* Takes @x (released in every case) as the held reply's document when @s
 * is held, and returns true; false (nothing done) when it is not. The
 * first document counts; @status is logged, the client got 200. */
bool efs_s3_hold_document(struct efs_s3_req *s, unsigned status, struct efs_s3_xml *x);

/* At the end of the request (s3_routes.c, before the operation's state is
 * freed): cancels and joins a running operation, drops @s's hold. */
void efs_s3_hold_end(struct efs_s3_req *s);

#endif
