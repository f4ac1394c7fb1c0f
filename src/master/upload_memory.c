/* SPDX-License-Identifier: MIT */
/* upload_memory.c - the master's upload memory, all requests and each
 * user's share (see upload_memory.h).
 *
 * One mutex covers the whole and the users' shares: a take must check and
 * change both at once, and it happens once per upload request, not per
 * byte. */
#include "master/upload_memory.h"
#include "echofs/common.h"
#include "echofs/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct upload_memory_user {
	char user[EFS_ID_MAX + 1];
	size_t used;
};

void efs_upload_memory_init(struct efs_upload_memory *um, size_t limit, size_t per_user)
{
	memset(um, 0, sizeof(*um));
	pthread_mutex_init(&um->lock, NULL);
	um->limit = limit;
	um->per_user = EFS_MIN(per_user, limit);
}

void efs_upload_memory_release(struct efs_upload_memory *um)
{
	free(um->users);
	um->users = NULL;
	um->user_count = um->user_cap = 0;
	pthread_mutex_destroy(&um->lock);
}

static bool counted(const char *user)
{
	return user && user[0];
}

/* @user's entry, or NULL. Under lock. */
static struct upload_memory_user *find_user(struct efs_upload_memory *um, const char *user)
{
	for (size_t i = 0; i < um->user_count; i++)
		if (strcmp(um->users[i].user, user) == 0)
			return &um->users[i];
	return NULL;
}

int efs_upload_memory_take(struct efs_upload_memory *um, const char *user, size_t bytes)
{
	int r = 0;
	pthread_mutex_lock(&um->lock);
	if (bytes > um->limit || um->used > um->limit - bytes) {
		r = -ENOSPC;
		goto out;
	}
	if (!counted(user)) {
		um->used += bytes;
		goto out;
	}
	struct upload_memory_user *u = find_user(um, user);
	size_t held = u ? u->used : 0;
	if (bytes > um->per_user || held > um->per_user - bytes) {
		r = -EDQUOT;
		goto out;
	}
	if (!u) {
		if (um->user_count == um->user_cap) {
			size_t cap = um->user_cap ? 2 * um->user_cap : 16;
			struct upload_memory_user *grown = realloc(um->users, cap * sizeof(*grown));
			if (!grown) {
				r = -ENOMEM;
				goto out;
			}
			um->users = grown;
			um->user_cap = cap;
		}
		u = &um->users[um->user_count++];
		efs_strlcpy(u->user, user, sizeof(u->user));
		u->used = 0;
	}
	u->used += bytes;
	um->used += bytes;
out:
	pthread_mutex_unlock(&um->lock);
	return r;
}

void efs_upload_memory_give(struct efs_upload_memory *um, const char *user, size_t bytes)
{
	if (!bytes)
		return;
	pthread_mutex_lock(&um->lock);
	um->used -= EFS_MIN(bytes, um->used);
	struct upload_memory_user *u = counted(user) ? find_user(um, user) : NULL;
	if (u) {
		u->used -= EFS_MIN(bytes, u->used);
		if (u->used == 0) /* the last one takes its place */
			*u = um->users[--um->user_count];
	}
	pthread_mutex_unlock(&um->lock);
}

size_t efs_upload_memory_used(struct efs_upload_memory *um, const char *user)
{
	pthread_mutex_lock(&um->lock);
	size_t used = um->used;
	if (user) {
		struct upload_memory_user *u = counted(user) ? find_user(um, user) : NULL;
		used = u ? u->used : 0;
	}
	pthread_mutex_unlock(&um->lock);
	return used;
}
