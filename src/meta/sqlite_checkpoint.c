/* SPDX-License-Identifier: MIT */
/* sqlite_checkpoint.c - WAL checkpoints off the committing thread (see
 * sqlite_checkpoint.h). */
#include "meta/sqlite_checkpoint.h"

#include "echofs/log.h"
#include "echofs/ticker.h"
#include "echofs/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct efs_sqlite_checkpointer {
	sqlite3 *db; /* the connection whose commits call the hook */
	char *path;
	/* EFS_SQLITE_CHECKPOINT_PAGES and _INLINE_PAGES (tests set smaller) */
	int mark_pages, inline_pages;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* Held over every checkpoint of the thread and of the writer: the
	 * writer's at the cap waits for the thread's under way instead of
	 * failing busy (a PASSIVE checkpoint never waits) and letting the WAL
	 * grow past it. */
	pthread_mutex_t run_lock;
	pthread_t thread;
	/* Under lock: */
	bool started;	  /* the thread runs */
	bool inline_only; /* the thread or its connection could not be had */
	bool due;	  /* a checkpoint is wanted */
	bool busy;	  /* the thread is checkpointing */
	bool stopping;
	int copied;	     /* the WAL's frames copied, as of the thread's last checkpoint */
	int last_pages;	     /* the WAL's size at the last commit */
	uint64_t generation; /* WAL restarts seen (a smaller size than the last) */
	uint64_t background;  /* the thread's checkpoints (tests read them) */
	uint64_t inline_runs; /* the writer's that did not fail */
};

/* Opens the thread's own connection: NULL when it cannot (logged). */
static sqlite3 *checkpoint_open(const char *path)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return db;
	efs_warn("sqlite: cannot open a connection to %s for background checkpoints (%s): the "
		 "writer checkpoints the WAL itself",
		 path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_close(db);
	return NULL;
}

/* A PASSIVE checkpoint of @db: the frames it leaves copied (all of the
 * WAL's: copied == the WAL's size), or -1 when it failed (logged). */
static int checkpoint(sqlite3 *db, const char *path, const char *how)
{
	int log_pages = 0, copied = 0;
	int64_t began = efs_mono_ms();
	int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages,
					   &copied);
	if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
		efs_warn("sqlite: %s checkpoint of %s failed: %s (tried again after later commits)",
			 how, path, sqlite3_errmsg(db));
		return -1;
	}
	efs_debug("sqlite: %s checkpoint: %d of %d WAL pages copied by now, %lld ms", how, copied,
		  log_pages, (long long)(efs_mono_ms() - began));
	return rc == SQLITE_OK ? copied : -1;
}

static void *checkpoint_main(void *arg)
{
	struct efs_sqlite_checkpointer *ck = arg;
	pthread_setname_np(pthread_self(), "meta-checkpoint"); /* for top, perf, tests */
	sqlite3 *db = checkpoint_open(ck->path);
	pthread_mutex_lock(&ck->lock);
	ck->inline_only = !db;
	for (;;) {
		while (db && !ck->due && !ck->stopping)
			pthread_cond_wait(&ck->wake, &ck->lock);
		if (!db || ck->stopping)
			break;
		ck->due = false;
		ck->busy = true;
		uint64_t generation = ck->generation;
		pthread_mutex_unlock(&ck->lock);
		pthread_mutex_lock(&ck->run_lock);
		int copied = checkpoint(db, ck->path, "background");
		pthread_mutex_unlock(&ck->run_lock);
		pthread_mutex_lock(&ck->lock);
		ck->busy = false;
		ck->background++;
		if (generation != ck->generation)
			continue; /* of a WAL since restarted */
		if (copied >= 0 && copied != ck->copied) {
			/* More copied; or fewer: the WAL started again without
			 * the hook seeing it shrink (a first transaction as large
			 * as the old WAL). */
			ck->copied = copied;
			continue;
		}
		/* Nothing more copied: a reader still reads an older snapshot
		 * (a long query), and the frames after it must wait for it.
		 * Not again at every commit meanwhile. */
		struct timespec until;
		efs_ticker_deadline(EFS_SQLITE_CHECKPOINT_RETRY_MS, &until);
		while (!ck->stopping && pthread_cond_timedwait(&ck->wake, &ck->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&ck->lock);
	sqlite3_close(db);
	return NULL;
}

/* SQLite's WAL hook: after each commit of ck->db, with the WAL's size in
 * pages. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct efs_sqlite_checkpointer *ck = arg;
	bool inline_now = pages >= ck->inline_pages;
	pthread_mutex_lock(&ck->lock);
	if (pages < ck->last_pages) { /* started again from its beginning */
		ck->generation++;
		ck->copied = 0;
	}
	ck->last_pages = pages;
	/* Enough not copied yet (all of it when the thread never runs). */
	bool want = pages - ck->copied >= ck->mark_pages;
	if (want && !ck->started && !ck->inline_only) {
		int r = pthread_create(&ck->thread, NULL, checkpoint_main, ck);
		ck->started = r == 0;
		ck->inline_only = r != 0;
		if (r != 0)
			efs_warn("sqlite: cannot start the checkpoint thread (%s): the writer "
				 "checkpoints the WAL itself",
				 strerror(r));
	}
	if (ck->inline_only) {
		inline_now |= want;
	} else if (want && !inline_now && !ck->busy && !ck->due) {
		ck->due = true;
		pthread_cond_signal(&ck->wake);
	}
	pthread_mutex_unlock(&ck->lock);
	/* Its result is not the commit's: the commit happened. */
	if (inline_now) {
		pthread_mutex_lock(&ck->run_lock);
		int copied = checkpoint(db, ck->path, "inline");
		pthread_mutex_unlock(&ck->run_lock);
		pthread_mutex_lock(&ck->lock);
		ck->inline_runs += copied >= 0;
		pthread_mutex_unlock(&ck->lock);
	}
	return SQLITE_OK;
}

struct efs_sqlite_checkpointer *efs_sqlite_checkpointer_attach(sqlite3 *db, const char *path)
{
	struct efs_sqlite_checkpointer *ck = calloc(1, sizeof(*ck));
	if (!ck || !(ck->path = strdup(path))) {
		free(ck);
		return NULL;
	}
	ck->db = db;
	ck->mark_pages = EFS_SQLITE_CHECKPOINT_PAGES;
	ck->inline_pages = EFS_SQLITE_CHECKPOINT_INLINE_PAGES;
	pthread_mutex_init(&ck->lock, NULL);
	pthread_mutex_init(&ck->run_lock, NULL);
	if (efs_ticker_cond_init(&ck->wake) < 0) {
		pthread_mutex_destroy(&ck->run_lock);
		pthread_mutex_destroy(&ck->lock);
		free(ck->path);
		free(ck);
		return NULL;
	}
	sqlite3_wal_hook(db, wal_hook, ck);
	return ck;
}

void efs_sqlite_checkpointer_detach(struct efs_sqlite_checkpointer *ck)
{
	if (!ck)
		return;
	sqlite3_wal_hook(ck->db, NULL, NULL);
	pthread_mutex_lock(&ck->lock);
	ck->stopping = true;
	pthread_cond_signal(&ck->wake);
	bool started = ck->started;
	pthread_mutex_unlock(&ck->lock);
	if (started)
		pthread_join(ck->thread, NULL);
	pthread_cond_destroy(&ck->wake);
	pthread_mutex_destroy(&ck->run_lock);
	pthread_mutex_destroy(&ck->lock);
	free(ck->path);
	free(ck);
}
