/* SPDX-License-Identifier: MIT */
/* test_control.c - unit tests of the control plane's tickets
 * (src/master/control.c, included to reach its pending list) at stop:
 * efs_control_stop abandons what is still pending (answered -EPIPE, off
 * the list) and leaves each ticket to its holder, whose collect and forget
 * work before or after the stop. So a holder stopped after the control
 * plane (master.c stops repair first, but nothing else depends on that
 * order) neither waits out its tickets' deadlines nor frees one twice or
 * leaks it (the sanitizer build checks: make SANITIZE=address,undefined
 * unit). Before, the stop destroyed the Ack condition under a waiting
 * collector and left the tickets on the list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/master/control.c"

#include <sched.h>
#include <time.h>

/* A control plane started for @m (zeroed: no gRPC listener, the tickets
 * are made here); freed with free() by the test, after efs_control_stop
 * where it needs one. */
static struct efs_control *started_control(struct efs_master **m)
{
	struct efs_control *ctl = calloc(1, sizeof(*ctl));
	char err[256] = "";
	*m = calloc(1, sizeof(**m));
	assert_non_null(*m);
	assert_non_null(ctl);
	assert_int_equal(efs_control_start(ctl, *m, err, sizeof(err)), 0);
	return ctl;
}

/* A copy's or a delete's ticket as push_send leaves it (sent, its Ack
 * awaited until @deadline_ms), on @ctl's pending list. */
static struct efs_control_ticket *pushed_ticket(struct efs_control *ctl, int64_t deadline_ms,
						bool copy)
{
	struct efs_control_ticket *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->copy = copy;
	p->deadline_ms = deadline_ms;
	pthread_mutex_lock(&ctl->lock);
	p->id = ++ctl->next_instruction;
	p->next = ctl->pending;
	ctl->pending = p;
	pthread_mutex_unlock(&ctl->lock);
	return p;
}

static struct efs_control_ticket *pending_ticket(struct efs_control *ctl, int64_t deadline_ms)
{
	return pushed_ticket(ctl, deadline_ms, true);
}

/* A holder waiting for its ticket on another thread. */
struct collector {
	struct efs_control *ctl;
	struct efs_control_ticket *ticket;
	int status;
	size_t index;
};

static void *collect_main(void *arg)
{
	struct collector *c = arg;
	c->index = efs_control_collect(c->ctl, &c->ticket, 1, &c->status, NULL);
	return NULL;
}

/* The collector's wait for a chunk's pushed deletes ends when the master
 * starts stopping (efs_control_stopping), with nothing taken: it forgets
 * them (chunk_workers.c) instead of waiting out their deadlines. A copy's
 * wait is not touched (repair has its own cancel). */
static void test_stopping_ends_a_wait_for_deletes_not_for_copies(void **state)
{
	struct efs_master *m;
	struct efs_control *ctl = started_control(&m);
	int64_t never = INT64_MAX / 2;
	struct collector c = {.ctl = ctl, .ticket = pushed_ticket(ctl, never, false),
			      .status = 12345, .index = 99};
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, collect_main, &c), 0);
	struct timespec nap = {0, 50 * 1000 * 1000};
	nanosleep(&nap, NULL);
	efs_control_stopping(ctl);
	pthread_join(thread, NULL); /* a hang here is the failure */
	assert_int_equal(c.index, 1);
	assert_int_equal(c.status, 12345);
	assert_ptr_equal(ctl->pending, c.ticket); /* still its holder's */
	efs_control_forget(ctl, c.ticket);

	/* Stopping already: a delete's wait returns at once; a copy's runs to
	 * its deadline (-ETIMEDOUT). */
	struct efs_control_ticket *del = pushed_ticket(ctl, never, false);
	int status = 12345;
	assert_int_equal(efs_control_collect(ctl, &del, 1, &status, NULL), 1);
	efs_control_forget(ctl, del);
	struct efs_control_ticket *copy = pushed_ticket(ctl, efs_mono_ms() + 20, true);
	assert_int_equal(efs_control_collect(ctl, &copy, 1, &status, NULL), 0);
	assert_int_equal(status, -ETIMEDOUT);
	assert_null(ctl->pending);
	efs_control_stop(ctl);
	free(ctl);
	free(m);
}

static void test_stop_abandons_pending_tickets_to_their_holders(void **state)
{
	struct efs_master *m;
	struct efs_control *ctl = started_control(&m);

	/* Deadlines that never come: only the stop can answer them. */
	int64_t never = INT64_MAX / 2;
	struct collector c = {.ctl = ctl, .ticket = pending_ticket(ctl, never), .index = 99};
	struct efs_control_ticket *held = pending_ticket(ctl, never);
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, collect_main, &c), 0);
	/* Most likely waiting by then; a collect that starts after the stop
	 * must end the same way. */
	struct timespec nap = {0, 50 * 1000 * 1000};
	nanosleep(&nap, NULL);

	efs_control_stop(ctl);
	/* Off the list, answered: the collector returns (a hang here is the
	 * failure: its deadline never comes). */
	assert_null(ctl->pending);
	pthread_join(thread, NULL);
	assert_int_equal(c.index, 0);
	assert_int_equal(c.status, -EPIPE);
	/* The other is still its holder's: collected after the stop (at once,
	 * -EPIPE) and freed by that; forget of NULL is accepted as ever. */
	int status = 0;
	assert_int_equal(efs_control_collect(ctl, &held, 1, &status, NULL), 0);
	assert_int_equal(status, -EPIPE);
	efs_control_forget(ctl, NULL);
	free(ctl);
	free(m);
}

static void test_forget_after_stop_frees_the_ticket(void **state)
{
	struct efs_master *m;
	struct efs_control *ctl = started_control(&m);
	struct efs_control_ticket *held = pending_ticket(ctl, INT64_MAX / 2);
	efs_control_stop(ctl);
	assert_null(ctl->pending);
	efs_control_forget(ctl, held); /* freed here, once (the leak check) */
	free(ctl);
	free(m);
}

static void test_collect_gives_up_when_cancelled(void **state)
{
	struct efs_master *m;
	struct efs_control *ctl = started_control(&m);
	atomic_bool cancel;
	int status = 12345;
	struct efs_control_ticket *t = pending_ticket(ctl, INT64_MAX / 2);
	atomic_init(&cancel, true);
	/* Cancelled: n, nothing taken, the status untouched. */
	assert_int_equal(efs_control_collect(ctl, &t, 1, &status, &cancel), 1);
	assert_int_equal(status, 12345);
	assert_ptr_equal(ctl->pending, t);
	/* But an Ack that came is taken, cancelled or stopping: the caller
	 * records what landed rather than count it failed. */
	struct efs_control_ticket *pair[2] = {pending_ticket(ctl, INT64_MAX / 2),
					      pushed_ticket(ctl, INT64_MAX / 2, false)};
	pthread_mutex_lock(&ctl->lock);
	pair[1]->done = true;
	pair[1]->status = 204;
	pthread_mutex_unlock(&ctl->lock);
	efs_control_stopping(ctl);
	assert_int_equal(efs_control_collect(ctl, pair, 2, &status, &cancel), 1);
	assert_int_equal(status, 204);
	status = 12345;
	assert_int_equal(efs_control_collect(ctl, pair, 1, &status, &cancel), 1);
	assert_int_equal(status, 12345);
	efs_control_forget(ctl, pair[0]);
	efs_control_forget(ctl, t);
	assert_null(ctl->pending);
	efs_control_stop(ctl);
	free(ctl);
	free(m);
}

/* A caller looking up streams (repair's efs_control_streaming, the
 * metrics' efs_control_streams) while the control plane stops: both read
 * ctl->rpc, which the stop clears. Read and cleared under ctl->lock, so
 * ThreadSanitizer finds no race here (before: the lookups read it
 * unlocked: `data race ... efs_control_stop` in a TSan build of this
 * test; this build cannot see it). */
struct looker {
	struct efs_control *ctl;
	atomic_bool started, done;
	size_t found;
};

static void *look_main(void *arg)
{
	struct looker *l = arg;
	atomic_store(&l->started, true);
	while (!atomic_load(&l->done)) {
		l->found += efs_control_streaming(l->ctl, "w-1");
		l->found += efs_control_streams(l->ctl);
	}
	return NULL;
}

static void test_stream_lookups_during_the_stop(void **state)
{
	struct efs_master *m;
	struct efs_control *ctl = started_control(&m);
	struct looker l = {.ctl = ctl};
	atomic_init(&l.started, false);
	atomic_init(&l.done, false);
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, look_main, &l), 0);
	while (!atomic_load(&l.started))
		sched_yield();
	efs_control_stop(ctl);
	atomic_store(&l.done, true);
	pthread_join(thread, NULL);
	assert_int_equal(l.found, 0); /* no stream ever */
	free(ctl);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stop_abandons_pending_tickets_to_their_holders),
	    cmocka_unit_test(test_forget_after_stop_frees_the_ticket),
	    cmocka_unit_test(test_collect_gives_up_when_cancelled),
	    cmocka_unit_test(test_stopping_ends_a_wait_for_deletes_not_for_copies),
	    cmocka_unit_test(test_stream_lookups_during_the_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
