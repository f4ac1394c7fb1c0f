/* SPDX-License-Identifier: MIT */
/* sqlite_checkpoint.h - WAL checkpoints off the committing thread (private
 * to the SQLite driver, sqlite.c).
 *
 * SQLite's default checkpoints the WAL into the database file inside the
 * COMMIT that takes the WAL past 1,000 pages: the store's single writer
 * (group commit, sql_store.c) then copies ~4 MiB and syncs the database
 * file while every upload queued behind it waits. Measured with 4 KiB
 * uploads at c=16, the checkpoint was ~9% of the master's CPU samples, on
 * the writer's thread; a larger WAL saved CPU (fewer copies of hot
 * pages: +10% uploads/s) but made each stall longer (p99 28 -> 40 ms).
 *
 * So a writing connection checkpoints on a thread of its own: its WAL hook
 * (called after each commit with the WAL's size) wakes that thread once
 * the WAL holds EFS_SQLITE_CHECKPOINT_PAGES, and the thread runs a
 * PASSIVE checkpoint on a connection of its own, beside the writer (WAL
 * lets one checkpoint run beside one writer; readers are never blocked).
 * The writer restarts the WAL from its start at its next commit after a
 * checkpoint that copied every frame. Under a write load that never
 * pauses the checkpoint may not catch up, and the WAL would grow without
 * bound: past EFS_SQLITE_CHECKPOINT_INLINE_PAGES the committing
 * connection checkpoints inline, as SQLite's default does (after the
 * thread's checkpoint under way, if one is; the writer appends nothing
 * meanwhile, so its next transaction starts the WAL again). If the thread or
 * its connection cannot be had, every checkpoint is inline, at
 * EFS_SQLITE_CHECKPOINT_PAGES, as before.
 *
 * Durability is SQLite's: a checkpoint copies committed frames only, and
 * with synchronous=FULL syncs the WAL before and the database file after.
 * The thread ("meta-checkpoint") starts with the first checkpoint due
 * (read-only connections of the pool never start one) and is stopped,
 * after the checkpoint under way, when the connection is closed.
 */
#ifndef ECHOFS_META_SQLITE_CHECKPOINT_H
#define ECHOFS_META_SQLITE_CHECKPOINT_H

#include <sqlite3.h>

/* WAL pages (of the page size, 4 KiB by default) that wake the thread. */
#define EFS_SQLITE_CHECKPOINT_PAGES 1000
/* After a checkpoint that copied nothing more (a reader holds an older
 * snapshot), the thread waits this long before the next. */
#define EFS_SQLITE_CHECKPOINT_RETRY_MS 20
/* WAL pages past which the committing connection checkpoints inline. */
#define EFS_SQLITE_CHECKPOINT_INLINE_PAGES 16000

struct efs_sqlite_checkpointer;

/* Installs the WAL hook on @db, a connection to the database file @path
 * (copied). NULL on -ENOMEM (the connection keeps SQLite's default
 * checkpoints then). */
struct efs_sqlite_checkpointer *efs_sqlite_checkpointer_attach(sqlite3 *db, const char *path);
/* Before @db is closed: removes the hook, stops the thread (after the
 * checkpoint under way, if any), closes its connection, frees @ck. NULL
 * is accepted. */
void efs_sqlite_checkpointer_detach(struct efs_sqlite_checkpointer *ck);

#endif
