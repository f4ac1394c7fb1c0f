/* SPDX-License-Identifier: MIT */
/* upload_memory.h - the memory the master may hold for uploads in flight:
 * one budget for all requests together (UPLOAD_MEMORY) and a share of it
 * for each user (UPLOAD_MEMORY_PER_USER), so that one user's parallel
 * uploads cannot take all of it and refuse everyone else's.
 *
 * A request takes what it may hold before its body is read and gives it
 * back when it ends. A request of the cluster (user "" or NULL) counts
 * only in the whole. Thread-safe.
 */
#ifndef ECHOFS_MASTER_UPLOAD_MEMORY_H
#define ECHOFS_MASTER_UPLOAD_MEMORY_H

#include <pthread.h>
#include <stddef.h>

struct upload_memory_user;

struct efs_upload_memory {
	pthread_mutex_t lock;
	size_t limit;	 /* all requests together */
	size_t per_user; /* each user's requests together */
	size_t used;
	/* Users holding bytes now, in no order (one per user with a request
	 * in flight, so at most one per connection). */
	struct upload_memory_user *users;
	size_t user_count, user_cap;
};

/* Sets up an unused budget of @limit bytes, of which one user may hold
 * @per_user (at most @limit). */
void efs_upload_memory_init(struct efs_upload_memory *um, size_t limit, size_t per_user);
/* Frees what @um holds; nothing may be taken any more. */
void efs_upload_memory_release(struct efs_upload_memory *um);
/* Takes @bytes for a request of @user ("" or NULL: the cluster's). 0;
 * -EDQUOT (nothing taken) when the user's share would be exceeded;
 * -ENOSPC when the whole budget would; -ENOMEM. */
int efs_upload_memory_take(struct efs_upload_memory *um, const char *user, size_t bytes);
/* Gives back @bytes taken for @user earlier (0 bytes: nothing to do). */
void efs_upload_memory_give(struct efs_upload_memory *um, const char *user, size_t bytes);
/* The bytes held now by @user's requests, or by all (@user NULL). */
size_t efs_upload_memory_used(struct efs_upload_memory *um, const char *user);

#endif
