/* SPDX-License-Identifier: MIT */
/* registry.c - worker registration, heartbeats and liveness. */
#include "master/registry.h"
#include "echofs/log.h"
#include "echofs/ticker.h"
#include "echofs/util.h"

#include <stdlib.h>
#include <string.h>

void efs_registry_init(struct efs_registry *reg, struct efs_meta *meta, struct efs_redis *redis,
		       int64_t dead_after_ms)
{
	reg->meta = meta;
	reg->redis = redis;
	reg->dead_after_ms = dead_after_ms;
	pthread_mutex_init(&reg->cache_lock, NULL);
	reg->cache = NULL;
	reg->cache_count = 0;
	reg->cache_index = NULL;
	reg->cache_index_size = 0;
	reg->cache_at_ms = 0;
	reg->cache_generation = 0;
	memset(&reg->report_wanted, 0, sizeof(reg->report_wanted));
	memset(&reg->late_writes, 0, sizeof(reg->late_writes));
	memset(&reg->contact, 0, sizeof(reg->contact));
	reg->repair_after_ms = 0;
	pthread_mutex_init(&reg->stamp_lock, NULL);
	pthread_mutex_init(&reg->flush_lock, NULL);
	efs_ticker_cond_init(&reg->flush_wake);
	reg->stamps = NULL;
	reg->stamp_count = 0;
	reg->stamp_alloc = 0;
	reg->flush_urgent = false;
	reg->flusher_stop = false;
	reg->flusher_running = false;
	reg->full_below_bytes = 0;
	atomic_init(&reg->flushes, 0);
	atomic_init(&reg->flushed_beats, 0);
	atomic_init(&reg->stamped_beats, 0);
}

void efs_registry_release(struct efs_registry *reg)
{
	if (!reg)
		return;
	free(reg->cache);
	reg->cache = NULL;
	reg->cache_count = 0;
	free(reg->cache_index);
	reg->cache_index = NULL;
	free(reg->report_wanted.ids);
	free(reg->report_wanted.asked_ms);
	free(reg->late_writes.ids);
	free(reg->late_writes.asked_ms);
	free(reg->contact.ids);
	free(reg->contact.asked_ms);
	memset(&reg->contact, 0, sizeof(reg->contact));
	memset(&reg->report_wanted, 0, sizeof(reg->report_wanted));
	memset(&reg->late_writes, 0, sizeof(reg->late_writes));
	free(reg->stamps);
	reg->stamps = NULL;
	reg->stamp_count = reg->stamp_alloc = 0;
	/* A zeroed mutex is PTHREAD_MUTEX_INITIALIZER on Linux: safe to destroy. */
	pthread_mutex_destroy(&reg->cache_lock);
	pthread_mutex_destroy(&reg->stamp_lock);
	pthread_mutex_destroy(&reg->flush_lock);
	pthread_cond_destroy(&reg->flush_wake);
}

/* Drops the cached list; the caller holds cache_lock. */
static void cache_drop_locked(struct efs_registry *reg)
{
	free(reg->cache);
	reg->cache = NULL;
	reg->cache_count = 0;
	free(reg->cache_index);
	reg->cache_index = NULL;
	reg->cache_index_size = 0;
	reg->cache_generation++;
}

static size_t id_hash(const char *worker_id);

/* Indexes the copy just installed (cache_lock held); without memory it
 * stays unindexed and is walked. */
static void cache_index_build(struct efs_registry *reg)
{
	free(reg->cache_index);
	reg->cache_index = NULL;
	reg->cache_index_size = 0;
	if (!reg->cache_count || reg->cache_count > UINT32_MAX / 4)
		return;
	size_t size = 16;
	while (size < reg->cache_count * 2)
		size *= 2;
	uint32_t *index = calloc(size, sizeof(*index));
	if (!index)
		return;
	for (size_t i = 0; i < reg->cache_count; i++) {
		size_t j = id_hash(reg->cache[i].info.worker_id) & (size - 1);
		while (index[j])
			j = (j + 1) & (size - 1);
		index[j] = (uint32_t)(i + 1);
	}
	reg->cache_index = index;
	reg->cache_index_size = size;
}

/* @worker_id's entry in the copy, or NULL (cache_lock held). */
static struct efs_worker_status *cache_find(struct efs_registry *reg, const char *worker_id)
{
	if (!reg->cache)
		return NULL;
	if (!reg->cache_index) {
		for (size_t i = 0; i < reg->cache_count; i++)
			if (strcmp(reg->cache[i].info.worker_id, worker_id) == 0)
				return &reg->cache[i];
		return NULL;
	}
	size_t mask = reg->cache_index_size - 1;
	for (size_t j = id_hash(worker_id) & mask; reg->cache_index[j]; j = (j + 1) & mask) {
		struct efs_worker_status *w = &reg->cache[reg->cache_index[j] - 1];
		if (strcmp(w->info.worker_id, worker_id) == 0)
			return w;
	}
	return NULL;
}

/* After a heartbeat this master took: a worker the copy shows alive gets its
 * new figures in place (placement weighs by free space); any other (unknown
 * to the copy, or dead in it) drops the copy, so it is placed on at once. */
static void cache_note_heartbeat(struct efs_registry *reg, const char *worker_id,
				 uint64_t capacity_bytes, uint64_t free_bytes,
				 uint64_t chunk_count, int64_t now)
{
	pthread_mutex_lock(&reg->cache_lock);
	if (reg->cache) {
		struct efs_worker_status *found = cache_find(reg, worker_id);
		if (found && found->alive) {
			struct efs_worker_info *w = &found->info;
			w->capacity_bytes = capacity_bytes;
			w->free_bytes = free_bytes;
			w->chunk_count = chunk_count;
			w->last_heartbeat_ms = now;
		} else {
			cache_drop_locked(reg);
		}
	}
	pthread_mutex_unlock(&reg->cache_lock);
}

static void hb_key(const char *worker_id, char *out, size_t size)
{
	snprintf(out, size, "efs:worker:%s:alive", worker_id);
}

/* Records liveness in Redis: a beat at @now, its key expiring
 * WORKER_DEAD_AFTER_MS after it (not after a store write that came
 * between). 0, or -EAGAIN when Redis is not there. */
static int redis_beat(struct efs_registry *reg, const char *worker_id, int64_t now)
{
	char key[EFS_ID_MAX + 32], value[24];
	if (!reg->redis)
		return -EAGAIN;
	hb_key(worker_id, key, sizeof(key));
	int n = snprintf(value, sizeof(value), "%lld", (long long)now);
	int64_t ttl = reg->dead_after_ms - EFS_MAX(efs_now_ms() - now, 0);
	if (ttl <= 0)
		return 0; /* a beat that old proves nothing now: a newer key stays */
	return efs_redis_set(reg->redis, key, value, (size_t)n, ttl, false);
}

int efs_registry_register(struct efs_registry *reg, const char *worker_id, const char *url,
			  const char *zone, uint64_t capacity_bytes, uint64_t free_bytes,
			  uint64_t chunk_count, char *out_id)
{
	struct efs_worker_info w = {0};
	struct efs_worker_info old;
	int64_t now = efs_now_ms();
	int r;

	if (!zone)
		zone = "";
	if (!efs_zone_valid(zone))
		return -EINVAL;
	efs_strlcpy(w.zone, zone, sizeof(w.zone));

	if (worker_id) {
		efs_strlcpy(w.worker_id, worker_id, sizeof(w.worker_id));
	} else {
		w.worker_id[0] = 'w';
		w.worker_id[1] = '-';
		if ((r = efs_random_hex(w.worker_id + 2, 8)) < 0)
			return r;
	}
	efs_strlcpy(w.url, url, sizeof(w.url));
	w.capacity_bytes = capacity_bytes;
	w.free_bytes = free_bytes;
	w.chunk_count = chunk_count;
	w.registered_at_ms = now;
	w.last_heartbeat_ms = now;

	bool known = efs_meta_worker_get(reg->meta, w.worker_id, &old) == 0;
	if ((r = efs_meta_worker_register(reg->meta, &w)) < 0)
		return r;
	redis_beat(reg, w.worker_id, now);
	r = efs_meta_worker_retire_url(reg->meta, w.url, w.worker_id);
	if (r > 0)
		efs_warn("worker %s now answers at %s: %d older record(s) at that URL marked dead",
			 w.worker_id, w.url, r);
	efs_info("worker %s %s at %s%s%s (capacity %llu, free %llu, chunks %llu)", w.worker_id,
		 known ? "registered again" : "registered", w.url, w.zone[0] ? " in zone " : "",
		 w.zone, (unsigned long long)capacity_bytes, (unsigned long long)free_bytes,
		 (unsigned long long)chunk_count);
	/* A new worker, a new URL or a retired record: placement sees it now. */
	pthread_mutex_lock(&reg->cache_lock);
	cache_drop_locked(reg);
	pthread_mutex_unlock(&reg->cache_lock);
	efs_strlcpy(out_id, w.worker_id, EFS_ID_MAX + 1);
	return 0;
}

static bool ids_has(const struct efs_registry_ids *set, const char *worker_id);
static struct efs_registry_stamp *stamp_find(struct efs_registry *reg, const char *worker_id);
static void ids_add(struct efs_registry_ids *set, const char *worker_id, int64_t now);

/* When @e's worker was last heard on its stream. */
static int64_t stamp_heard(const struct efs_registry_stamp *e)
{
	return EFS_MAX(e->at_ms, e->heard_ms);
}

/* Whether @e's worker was heard within WORKER_DEAD_AFTER_MS before @now
 * (a stamp after @now is not counted: read under stamp_lock, @now is
 * later than every stamp unless the clock stepped back). */
static bool stamp_live(const struct efs_registry *reg, const struct efs_registry_stamp *e,
		       int64_t now)
{
	int64_t heard = stamp_heard(e);
	return heard <= now && now - heard <= reg->dead_after_ms;
}

/* Whether this master heard from @worker_id within WORKER_DEAD_AFTER_MS. */
static bool heard_lately(struct efs_registry *reg, const char *worker_id)
{
	int64_t mono = efs_mono_ms();
	bool heard = false;
	/* a stream worker's stamps are contacts too (efs_registry_stamp does
	 * not note them one by one) */
	int64_t now = efs_now_ms();
	pthread_mutex_lock(&reg->stamp_lock);
	const struct efs_registry_stamp *e = stamp_find(reg, worker_id);
	heard = e && now - stamp_heard(e) <= reg->dead_after_ms;
	pthread_mutex_unlock(&reg->stamp_lock);
	if (heard)
		return true;
	pthread_mutex_lock(&reg->cache_lock);
	for (size_t i = 0; i < reg->contact.count; i++) {
		if (strcmp(reg->contact.ids[i], worker_id) == 0) {
			heard = mono - reg->contact.asked_ms[i] <= reg->dead_after_ms;
			break;
		}
	}
	pthread_mutex_unlock(&reg->cache_lock);
	return heard;
}

void efs_registry_note_contact(struct efs_registry *reg, const char *worker_id)
{
	pthread_mutex_lock(&reg->cache_lock);
	ids_add(&reg->contact, worker_id, efs_mono_ms());
	pthread_mutex_unlock(&reg->cache_lock);
}

/* Whether @worker_id was dead (for every master) just before a beat at
 * @now: the same rule as efs_registry_list, read before the beat is
 * recorded. This master's cached copy answers "alive" without a read when
 * it saw the worker beat within WORKER_DEAD_AFTER_MS (cache_note_heartbeat
 * keeps last_heartbeat_ms current for the beats this master takes). An
 * unknown worker or a failed read is not a rejoin: an unknown worker
 * registers again, which asks for a full report anyway. */
static bool was_dead(struct efs_registry *reg, const char *worker_id, int64_t now)
{
	/* Heard from lately: only a gap repair may have acted in counts (the
	 * rejoin-report loop of issue 19: slow answers to beats made a
	 * talking worker look dead, and its report slowed them more). */
	int64_t dead_after = reg->dead_after_ms;
	if (heard_lately(reg, worker_id))
		dead_after += EFS_MAX(reg->repair_after_ms, 0);
	bool recent = false;
	pthread_mutex_lock(&reg->cache_lock);
	const struct efs_worker_status *cached = cache_find(reg, worker_id);
	if (cached)
		recent = cached->info.last_heartbeat_ms > 0 &&
			 now - cached->info.last_heartbeat_ms <= dead_after;
	pthread_mutex_unlock(&reg->cache_lock);
	if (recent)
		return false;
	if (reg->redis) {
		char key[EFS_ID_MAX + 32];
		const char *keys[1] = {key};
		bool alive = false;
		hb_key(worker_id, key, sizeof(key));
		if (efs_redis_exists_many(reg->redis, keys, 1, &alive) == 0 && alive)
			return false;
	}
	struct efs_worker_info old;
	if (efs_meta_worker_get(reg->meta, worker_id, &old) < 0)
		return false;
	return old.last_heartbeat_ms <= 0 || now - old.last_heartbeat_ms > dead_after;
}

/* Small sets of worker ids (the caller holds cache_lock). */
static bool ids_has(const struct efs_registry_ids *set, const char *worker_id)
{
	for (size_t i = 0; i < set->count; i++)
		if (strcmp(set->ids[i], worker_id) == 0)
			return true;
	return false;
}

/* Adds @worker_id unless there, asked at @now (a later ask replaces an
 * earlier one); a full set (or no memory) drops it: the worst is a report
 * at its next REPORT_INTERVAL_MS instead. */
static void ids_add(struct efs_registry_ids *set, const char *worker_id, int64_t now)
{
	for (size_t i = 0; i < set->count; i++) {
		if (strcmp(set->ids[i], worker_id) == 0) {
			set->asked_ms[i] = EFS_MAX(set->asked_ms[i], now);
			return;
		}
	}
	if (!set->ids) {
		set->ids = calloc(EFS_REGISTRY_REPORT_WANTED_MAX, sizeof(*set->ids));
		set->asked_ms = calloc(EFS_REGISTRY_REPORT_WANTED_MAX, sizeof(*set->asked_ms));
		if (!set->ids || !set->asked_ms) {
			free(set->ids);
			free(set->asked_ms);
			set->ids = NULL;
			set->asked_ms = NULL;
		}
	}
	if (set->ids && set->count < EFS_REGISTRY_REPORT_WANTED_MAX) {
		efs_strlcpy(set->ids[set->count], worker_id, sizeof(set->ids[0]));
		set->asked_ms[set->count++] = now;
	}
}

/* Removes @worker_id if asked at or before @asked_by; whether it was
 * removed. */
static bool ids_remove_if(struct efs_registry_ids *set, const char *worker_id, int64_t asked_by)
{
	for (size_t i = 0; i < set->count; i++) {
		if (strcmp(set->ids[i], worker_id) != 0)
			continue;
		if (set->asked_ms[i] > asked_by)
			return false;
		if (i != --set->count) {
			memcpy(set->ids[i], set->ids[set->count], sizeof(set->ids[0]));
			set->asked_ms[i] = set->asked_ms[set->count];
		}
		return true;
	}
	return false;
}

/* Removes @worker_id; whether it was there. */
static bool ids_remove(struct efs_registry_ids *set, const char *worker_id)
{
	return ids_remove_if(set, worker_id, INT64_MAX);
}

/* Whether @worker_id owes a report; with @add, it does from now on. */
static bool report_wanted(struct efs_registry *reg, const char *worker_id, bool add)
{
	pthread_mutex_lock(&reg->cache_lock);
	if (add)
		ids_add(&reg->report_wanted, worker_id, efs_now_ms());
	bool owed = add || ids_has(&reg->report_wanted, worker_id);
	pthread_mutex_unlock(&reg->cache_lock);
	return owed;
}

void efs_registry_report_done(struct efs_registry *reg, const char *worker_id)
{
	pthread_mutex_lock(&reg->cache_lock);
	ids_remove(&reg->report_wanted, worker_id);
	pthread_mutex_unlock(&reg->cache_lock);
}

void efs_registry_ask_report(struct efs_registry *reg, const char *worker_id,
			     const char *chunk_id)
{
	pthread_mutex_lock(&reg->cache_lock);
	bool asked = ids_has(&reg->report_wanted, worker_id);
	ids_add(&reg->report_wanted, worker_id, efs_now_ms());
	pthread_mutex_unlock(&reg->cache_lock);
	if (!asked)
		efs_warn("worker %s did not answer whether it holds chunk %.12s, and a copy was "
			 "written elsewhere in its place: asking it for a full chunk report, which "
			 "drops its copy if it is surplus",
			 worker_id, chunk_id);
}

void efs_registry_report_begun(struct efs_registry *reg, const char *worker_id,
			       int64_t master_started_ms)
{
	pthread_mutex_lock(&reg->cache_lock);
	ids_remove_if(&reg->report_wanted, worker_id, master_started_ms);
	pthread_mutex_unlock(&reg->cache_lock);
}

void efs_registry_note_write(struct efs_registry *reg, const char *worker_id, bool ok)
{
	bool healed = false;
	pthread_mutex_lock(&reg->cache_lock);
	if (!ok) {
		ids_add(&reg->late_writes, worker_id, efs_now_ms());
	} else if (reg->late_writes.count && ids_remove(&reg->late_writes, worker_id)) {
		ids_add(&reg->report_wanted, worker_id, efs_now_ms());
		healed = true;
	}
	pthread_mutex_unlock(&reg->cache_lock);
	if (healed)
		efs_warn("worker %s takes writes again after writes to it were given up: asking "
			 "it for a full chunk report, so that copies landing late are found",
			 worker_id);
}

int efs_registry_heartbeat(struct efs_registry *reg, const char *worker_id,
			   uint64_t capacity_bytes, uint64_t free_bytes, uint64_t chunk_count,
			   bool *rejoined)
{
	int64_t now = efs_now_ms();
	char key[EFS_ID_MAX + 32];
	bool dead_now = was_dead(reg, worker_id, now);
	bool dead = report_wanted(reg, worker_id, dead_now);
	int r;

	if (dead_now)
		efs_warn("worker %s beats again after it was counted dead: asking it for a full "
			 "chunk report (at every beat until one begun since is under way)",
			 worker_id);

	/* With Redis, the store's copy is written once a quarter period (the
	 * first master to set the NX key writes it); in between, a worker the
	 * store confirmed recently only refreshes its Redis key. */
	if (reg->redis) {
		snprintf(key, sizeof(key), "efs:worker:%s:stored", worker_id);
		r = efs_redis_set(reg->redis, key, "1", 1, EFS_MAX(reg->dead_after_ms / 4, 1), true);
		if (r == 0 && redis_beat(reg, worker_id, now) == 0) {
			cache_note_heartbeat(reg, worker_id, capacity_bytes, free_bytes,
					     chunk_count, now);
			efs_registry_note_contact(reg, worker_id);
			if (rejoined)
				*rejoined = dead;
			return 0;
		}
	}
	r = efs_meta_worker_heartbeat(reg->meta, worker_id, capacity_bytes, free_bytes,
				      chunk_count, now);
	if (r < 0) {
		/* Unknown (or unconfirmed): no key may claim it is alive. */
		if (reg->redis)
			efs_redis_del(reg->redis, key);
		return r;
	}
	redis_beat(reg, worker_id, now);
	cache_note_heartbeat(reg, worker_id, capacity_bytes, free_bytes, chunk_count, now);
	/* Answered now: the worker's next beat comes one interval after this,
	 * however long the store took. */
	efs_registry_note_contact(reg, worker_id);
	if (rejoined)
		*rejoined = dead;
	return 0;
}

/* ---- stream beats: stamps in memory, one flusher ---- */

/* The stamps are an open-addressing hash table (linear probing, a power
 * of two of slots, at most half full; an empty worker_id is a free slot):
 * a beat finds its worker without a walk over a thousand ids. */
static size_t id_hash(const char *worker_id)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)worker_id; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)h;
}

/* The stamp of @worker_id, or NULL; the caller holds stamp_lock. */
static struct efs_registry_stamp *stamp_find(struct efs_registry *reg, const char *worker_id)
{
	if (!reg->stamp_alloc)
		return NULL;
	size_t mask = reg->stamp_alloc - 1;
	for (size_t i = id_hash(worker_id) & mask;; i = (i + 1) & mask) {
		struct efs_registry_stamp *e = &reg->stamps[i];
		if (!e->worker_id[0])
			return NULL;
		if (strcmp(e->worker_id, worker_id) == 0)
			return e;
	}
}

/* A free slot for @worker_id (not in the table), the table grown first
 * when needed; NULL when full (EFS_REGISTRY_STAMPS_MAX) or out of memory.
 * The caller holds stamp_lock. */
static struct efs_registry_stamp *stamp_add(struct efs_registry *reg, const char *worker_id)
{
	if (reg->stamp_count >= EFS_REGISTRY_STAMPS_MAX)
		return NULL;
	if ((reg->stamp_count + 1) * 2 > reg->stamp_alloc) {
		size_t alloc = reg->stamp_alloc ? reg->stamp_alloc * 2 : 256;
		struct efs_registry_stamp *old = reg->stamps, *grown = calloc(alloc, sizeof(*grown));
		if (!grown)
			return NULL;
		size_t old_alloc = reg->stamp_alloc;
		reg->stamps = grown;
		reg->stamp_alloc = alloc;
		for (size_t i = 0; i < old_alloc; i++) {
			if (!old[i].worker_id[0])
				continue;
			size_t j = id_hash(old[i].worker_id) & (alloc - 1);
			while (grown[j].worker_id[0])
				j = (j + 1) & (alloc - 1);
			grown[j] = old[i];
		}
		free(old);
	}
	size_t mask = reg->stamp_alloc - 1, i = id_hash(worker_id) & mask;
	while (reg->stamps[i].worker_id[0])
		i = (i + 1) & mask;
	struct efs_registry_stamp *e = &reg->stamps[i];
	memset(e, 0, sizeof(*e));
	efs_strlcpy(e->worker_id, worker_id, sizeof(e->worker_id));
	reg->stamp_count++;
	return e;
}

/* Removes @worker_id's stamp (backward-shift deletion: the entries after
 * it in its probe run move up, so no lookup stops short); the caller
 * holds stamp_lock. */
static void stamp_remove_locked(struct efs_registry *reg, const char *worker_id)
{
	struct efs_registry_stamp *e = stamp_find(reg, worker_id);
	if (!e)
		return;
	size_t mask = reg->stamp_alloc - 1, hole = (size_t)(e - reg->stamps);
	memset(e, 0, sizeof(*e));
	reg->stamp_count--;
	for (size_t j = (hole + 1) & mask; reg->stamps[j].worker_id[0]; j = (j + 1) & mask) {
		size_t home = id_hash(reg->stamps[j].worker_id) & mask;
		/* stays when its home lies cyclically in (hole, j] */
		bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (stays)
			continue;
		reg->stamps[hole] = reg->stamps[j];
		memset(&reg->stamps[j], 0, sizeof(reg->stamps[j]));
		hole = j;
	}
}

/* Whether a move of free space from @before to @after is one placement on
 * every master must see now: across full_below_bytes, or by an eighth of
 * the capacity. */
static bool space_material(const struct efs_registry *reg, uint64_t capacity_bytes,
			   uint64_t before, uint64_t after)
{
	uint64_t line = reg->full_below_bytes;
	if (line && (before < line) != (after < line))
		return true;
	uint64_t moved = before > after ? before - after : after - before;
	return capacity_bytes && moved >= capacity_bytes / 8;
}

int efs_registry_stamp(struct efs_registry *reg, const char *worker_id, uint64_t capacity_bytes,
		       uint64_t free_bytes, uint64_t chunk_count, bool *rejoined)
{
	int64_t now = efs_now_ms();
	bool urgent = false;

	pthread_mutex_lock(&reg->stamp_lock);
	struct efs_registry_stamp *e = stamp_find(reg, worker_id);
	/* Fresh: its last beat was flushed (or written) long before anyone
	 * could count it dead, so this beat cannot be a rejoin. */
	if (!e || now - e->at_ms > reg->dead_after_ms / 2 || now < e->at_ms) {
		pthread_mutex_unlock(&reg->stamp_lock);
		return -EAGAIN;
	}
	/* Logged once per worker and flush (the next compares with what
	 * this flush writes), whether or not another worker asked first. */
	if (space_material(reg, capacity_bytes, e->flushed_free, free_bytes) &&
	    !space_material(reg, capacity_bytes, e->flushed_free, e->free_bytes)) {
		urgent = true;
		reg->flush_urgent = true;
		pthread_cond_signal(&reg->flush_wake);
	}
	e->capacity_bytes = capacity_bytes;
	e->free_bytes = free_bytes;
	e->chunk_count = chunk_count;
	e->at_ms = now;
	e->dirty = true;
	pthread_mutex_unlock(&reg->stamp_lock);
	if (urgent)
		efs_info("worker %s: free space now %llu of %llu bytes: writing its beat at once",
			 worker_id, (unsigned long long)free_bytes,
			 (unsigned long long)capacity_bytes);
	atomic_fetch_add(&reg->stamped_beats, 1);
	cache_note_heartbeat(reg, worker_id, capacity_bytes, free_bytes, chunk_count, now);
	if (rejoined)
		*rejoined = report_wanted(reg, worker_id, false);
	return 0;
}

void efs_registry_heard(struct efs_registry *reg, const char *worker_id)
{
	int64_t now = efs_now_ms();
	pthread_mutex_lock(&reg->stamp_lock);
	struct efs_registry_stamp *e = stamp_find(reg, worker_id);
	if (e && stamp_live(reg, e, now))
		e->heard_ms = now;
	pthread_mutex_unlock(&reg->stamp_lock);
}

int efs_registry_stream_heartbeat(struct efs_registry *reg, const char *worker_id,
				  uint64_t capacity_bytes, uint64_t free_bytes,
				  uint64_t chunk_count, bool *rejoined)
{
	int r = efs_registry_heartbeat(reg, worker_id, capacity_bytes, free_bytes, chunk_count,
				       rejoined);
	if (r < 0)
		return r;
	int64_t now = efs_now_ms();
	pthread_mutex_lock(&reg->stamp_lock);
	struct efs_registry_stamp *e = stamp_find(reg, worker_id);
	if (!e)
		e = stamp_add(reg, worker_id); /* NULL: its beats keep going to the store */
	if (e) { /* just written: clean */
		e->capacity_bytes = capacity_bytes;
		e->free_bytes = free_bytes;
		e->chunk_count = chunk_count;
		e->at_ms = now;
		e->flushed_free = free_bytes;
		e->dirty = false;
	}
	pthread_mutex_unlock(&reg->stamp_lock);
	return 0;
}

/* Writes @n beats to Redis, each key expiring WORKER_DEAD_AFTER_MS after
 * its beat (not after this flush: a master that dies with stamps unwritten
 * must not lengthen anyone's life). */
static void flush_redis(struct efs_registry *reg, const struct efs_worker_beat *beats,
			const int *results, size_t n)
{
	/* Read now, after the store write: a flush that waited for a locked
	 * store must not give the keys that wait on top of their life. */
	int64_t now = efs_now_ms();
	char (*keys)[EFS_ID_MAX + 32] = calloc(n, sizeof(*keys));
	char (*values)[24] = calloc(n, sizeof(*values));
	const char **key_ptrs = calloc(n, sizeof(*key_ptrs));
	const char **value_ptrs = calloc(n, sizeof(*value_ptrs));
	int64_t *ttls = calloc(n, sizeof(*ttls));
	size_t m = 0;
	if (keys && values && key_ptrs && value_ptrs && ttls) {
		for (size_t i = 0; i < n; i++) {
			int64_t ttl = reg->dead_after_ms - (now - beats[i].at_ms);
			if (results[i] < 0 || ttl <= 0)
				continue;
			hb_key(beats[i].worker_id, keys[m], sizeof(keys[m]));
			snprintf(values[m], sizeof(values[m]), "%lld", (long long)beats[i].at_ms);
			key_ptrs[m] = keys[m];
			value_ptrs[m] = values[m];
			ttls[m++] = ttl;
		}
		/* a failure leaves the store's copy, which alone says alive */
		efs_redis_set_many(reg->redis, key_ptrs, value_ptrs, ttls, m);
	}
	free(keys);
	free(values);
	free(key_ptrs);
	free(value_ptrs);
	free(ttls);
}

int efs_registry_flush(struct efs_registry *reg)
{
	struct efs_worker_beat *beats = NULL;
	int *results = NULL;
	size_t n = 0, dropped = 0;
	int64_t now = efs_now_ms();
	int r = 0;

	pthread_mutex_lock(&reg->flush_lock);
	pthread_mutex_lock(&reg->stamp_lock);
	reg->flush_urgent = false;
	/* @beats: the n to write from its start, stale ids from its end */
	size_t slots = reg->stamp_count;
	if (slots) {
		beats = malloc(slots * sizeof(*beats));
		results = calloc(reg->stamp_count, sizeof(*results));
	}
	for (size_t i = 0; beats && results && i < reg->stamp_alloc; i++) {
		struct efs_registry_stamp *e = &reg->stamps[i];
		if (!e->worker_id[0])
			continue;
		if (now - stamp_heard(e) > reg->dead_after_ms) {
			/* No beat for a whole period: its stream went quiet or
			 * ended unseen; its next beat goes through the store.
			 * (Removed below: a removal moves other entries.) */
			efs_strlcpy(beats[slots - 1 - dropped].worker_id, e->worker_id,
				    sizeof(beats[0].worker_id));
			dropped++;
			continue;
		}
		if (e->dirty) {
			struct efs_worker_beat *b = &beats[n++];
			efs_strlcpy(b->worker_id, e->worker_id, sizeof(b->worker_id));
			b->capacity_bytes = e->capacity_bytes;
			b->free_bytes = e->free_bytes;
			b->chunk_count = e->chunk_count;
			b->at_ms = e->at_ms;
			e->dirty = false;
			e->flushed_free = e->free_bytes;
		}
	}
	for (size_t k = 0; beats && results && k < dropped; k++) {
		char stale[EFS_ID_MAX + 1];
		efs_strlcpy(stale, beats[slots - 1 - k].worker_id, sizeof(stale));
		stamp_remove_locked(reg, stale);
	}
	pthread_mutex_unlock(&reg->stamp_lock);
	if (slots && (!beats || !results)) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t done = 0; done < n; done += EFS_META_BEATS_MAX) {
		size_t batch = EFS_MIN(n - done, (size_t)EFS_META_BEATS_MAX);
		int w = efs_meta_worker_heartbeat_many(reg->meta, beats + done, batch,
						       results + done);
		if (w < 0) {
			r = w;
			for (size_t i = done; i < done + batch; i++)
				results[i] = w;
		}
	}
	if (reg->redis && n)
		flush_redis(reg, beats, results, n);
	pthread_mutex_lock(&reg->stamp_lock);
	for (size_t i = 0; i < n; i++) {
		struct efs_registry_stamp *e = stamp_find(reg, beats[i].worker_id);
		if (results[i] == -ENOENT) {
			efs_warn("worker %s beats on its stream but the store does not know it: "
				 "its next beat asks it to register again",
				 beats[i].worker_id);
			stamp_remove_locked(reg, beats[i].worker_id);
		} else if (results[i] < 0 && e && !e->dirty) {
			e->dirty = true; /* written at the next flush */
		}
	}
	pthread_mutex_unlock(&reg->stamp_lock);
	if (r < 0)
		efs_warn("stream heartbeats of %zu workers not written to the metadata store (%s): "
			 "tried again in %lld ms; other masters may count them dead meanwhile",
			 n, strerror(-r), (long long)EFS_MAX(reg->dead_after_ms / 4, 1));
	atomic_fetch_add(&reg->flushes, 1);
	atomic_fetch_add(&reg->flushed_beats, n);
	if (dropped)
		efs_info("%zu stream workers sent no beat for %lld ms: their stamps dropped", dropped,
			 (long long)reg->dead_after_ms);
out:
	pthread_mutex_unlock(&reg->flush_lock);
	free(beats);
	free(results);
	return r;
}

static void *flusher_main(void *arg)
{
	struct efs_registry *reg = arg;
	int64_t period = EFS_MAX(reg->dead_after_ms / 4, 1);
	int64_t last = efs_mono_ms();

	pthread_mutex_lock(&reg->stamp_lock);
	while (!reg->flusher_stop) {
		struct timespec deadline;
		efs_ticker_deadline(last + period - efs_mono_ms(), &deadline);
		while (!reg->flusher_stop && !reg->flush_urgent &&
		       pthread_cond_timedwait(&reg->flush_wake, &reg->stamp_lock, &deadline) == 0)
			;
		if (reg->flusher_stop)
			break;
		pthread_mutex_unlock(&reg->stamp_lock);
		last = efs_mono_ms();
		efs_registry_flush(reg);
		pthread_mutex_lock(&reg->stamp_lock);
	}
	pthread_mutex_unlock(&reg->stamp_lock);
	return NULL;
}

int efs_registry_flusher_start(struct efs_registry *reg)
{
	reg->flusher_stop = false;
	int r = -pthread_create(&reg->flusher, NULL, flusher_main, reg);
	if (r == 0)
		reg->flusher_running = true;
	return r;
}

void efs_registry_flusher_stop(struct efs_registry *reg)
{
	if (!reg->flusher_running)
		return;
	pthread_mutex_lock(&reg->stamp_lock);
	reg->flusher_stop = true;
	pthread_cond_signal(&reg->flush_wake);
	pthread_mutex_unlock(&reg->stamp_lock);
	pthread_join(reg->flusher, NULL);
	reg->flusher_running = false;
	efs_registry_flush(reg);
}

/* efs_registry_suspect under flush_lock. */
static int suspect_locked(struct efs_registry *reg, const char *worker_id, int64_t grace_ms)
{
	struct efs_worker_info w;
	int64_t dead_from = efs_now_ms() - reg->dead_after_ms + EFS_MAX(grace_ms, 0);
	int r = efs_meta_worker_get(reg->meta, worker_id, &w);
	if (r < 0)
		return r;
	if (w.last_heartbeat_ms > dead_from &&
	    (r = efs_meta_worker_heartbeat(reg->meta, worker_id, w.capacity_bytes, w.free_bytes,
					   w.chunk_count, dead_from)) < 0)
		return r;
	if (reg->redis) {
		char key[EFS_ID_MAX + 32], value[24];
		hb_key(worker_id, key, sizeof(key));
		int n = snprintf(value, sizeof(value), "%lld", (long long)dead_from);
		/* A grace of WORKER_DEAD_AFTER_MS or more changes nothing: the
		 * key of the last beat expires first (setting it anew would keep
		 * a killed worker alive for the whole grace). */
		if (grace_ms <= 0)
			efs_redis_del(reg->redis, key);
		else if (grace_ms < reg->dead_after_ms)
			efs_redis_set(reg->redis, key, value, (size_t)n, grace_ms, false);
		/* its next beat writes the store again at once */
		snprintf(key, sizeof(key), "efs:worker:%s:stored", worker_id);
		efs_redis_del(reg->redis, key);
	}
	pthread_mutex_lock(&reg->cache_lock);
	cache_drop_locked(reg);
	pthread_mutex_unlock(&reg->cache_lock);
	return 0;
}

int efs_registry_suspect(struct efs_registry *reg, const char *worker_id, int64_t grace_ms)
{
	/* No flush may write its beat after this (a flush under way ends
	 * first): the stream's proof of life ended with it. */
	pthread_mutex_lock(&reg->flush_lock);
	pthread_mutex_lock(&reg->stamp_lock);
	stamp_remove_locked(reg, worker_id);
	pthread_mutex_unlock(&reg->stamp_lock);
	int r = suspect_locked(reg, worker_id, grace_ms);
	pthread_mutex_unlock(&reg->flush_lock);
	return r;
}

/* Liveness from Redis, where it answers: the key expires with the worker. */
static void redis_alive(struct efs_registry *reg, struct efs_worker_status *list, size_t n)
{
	char (*keys)[EFS_ID_MAX + 32] = calloc(n, sizeof(*keys));
	const char **key_ptrs = calloc(n, sizeof(*key_ptrs));
	bool *alive = calloc(n, sizeof(*alive));
	if (keys && key_ptrs && alive) {
		for (size_t i = 0; i < n; i++) {
			hb_key(list[i].info.worker_id, keys[i], sizeof(keys[i]));
			key_ptrs[i] = keys[i];
		}
		/* Alive when the key says so, or when the store saw a beat
		 * recently (an emptied, restarted Redis must not make every
		 * worker dead until its next beat). */
		if (efs_redis_exists_many(reg->redis, key_ptrs, n, alive) == 0)
			for (size_t i = 0; i < n; i++)
				list[i].alive = list[i].alive ||
						(alive[i] && list[i].info.last_heartbeat_ms > 0);
	}
	free(keys);
	free(key_ptrs);
	free(alive);
}

/* R17: a stream beating to this master proves its worker alive here,
 * whether or not the flusher has written its latest beat yet (a flush
 * held up by a slow store or a starved thread must not make every stream
 * worker dead on the very master that hears them). A fresher stamp also
 * gives the entry its beat's time and space figures. */
static void stamps_alive(struct efs_registry *reg, struct efs_worker_status *list, size_t n)
{
	pthread_mutex_lock(&reg->stamp_lock);
	/* Read under the lock, not before the store's list: a beat stamped
	 * while the list was read is not "from the future" (a reading taken
	 * before it made a worker beating every 200 ms look dead whenever a
	 * beat landed during the read and its stored beat was old). */
	int64_t now = efs_now_ms();
	for (size_t i = 0; i < n && reg->stamp_count; i++) {
		const struct efs_registry_stamp *e = stamp_find(reg, list[i].info.worker_id);
		if (!e || !stamp_live(reg, e, now))
			continue;
		/* Heard lately, its stamp fresher than the store's copy or a
		 * beat of it waiting for the store (efs_registry_heard). */
		if (e->at_ms > list[i].info.last_heartbeat_ms) {
			list[i].alive = true;
			list[i].info.last_heartbeat_ms = e->at_ms;
			list[i].info.capacity_bytes = e->capacity_bytes;
			list[i].info.free_bytes = e->free_bytes;
			list[i].info.chunk_count = e->chunk_count;
		} else if (e->heard_ms > list[i].info.last_heartbeat_ms) {
			list[i].alive = true;
		}
	}
	pthread_mutex_unlock(&reg->stamp_lock);
}

int efs_registry_list(struct efs_registry *reg, struct efs_worker_status **out, size_t *count)
{
	struct efs_worker_info *infos = NULL;
	size_t n = 0;
	int64_t now = efs_now_ms();
	int r = efs_meta_worker_list(reg->meta, &infos, &n);
	if (r < 0)
		return r;
	struct efs_worker_status *list = calloc(n ? n : 1, sizeof(*list));
	if (!list) {
		free(infos);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		list[i].info = infos[i];
		list[i].alive = infos[i].last_heartbeat_ms > 0 &&
				now - infos[i].last_heartbeat_ms <= reg->dead_after_ms;
	}
	free(infos);
	if (reg->redis && n > 0)
		redis_alive(reg, list, n);
	stamps_alive(reg, list, n);
	*out = list;
	*count = n;
	return 0;
}

static int copy_list(const struct efs_worker_status *from, size_t n,
		     struct efs_worker_status **out)
{
	struct efs_worker_status *list = malloc((n ? n : 1) * sizeof(*list));
	if (!list)
		return -ENOMEM;
	if (n)
		memcpy(list, from, n * sizeof(*list));
	*out = list;
	return 0;
}

int efs_registry_list_cached(struct efs_registry *reg, struct efs_worker_status **out,
			     size_t *count)
{
	struct efs_worker_status *list, *keep;
	size_t n;
	int r;

	pthread_mutex_lock(&reg->cache_lock);
	if (reg->cache && efs_mono_ms() - reg->cache_at_ms < EFS_REGISTRY_CACHE_MS) {
		r = copy_list(reg->cache, reg->cache_count, out);
		if (r == 0)
			*count = reg->cache_count;
		pthread_mutex_unlock(&reg->cache_lock);
		return r;
	}
	uint64_t generation = reg->cache_generation;
	pthread_mutex_unlock(&reg->cache_lock);

	/* The store is read outside the lock: placements do not queue behind
	 * one slow query (two may read at once; the later copy wins). */
	int64_t read_at = efs_mono_ms();
	if ((r = efs_registry_list(reg, &list, &n)) < 0)
		return r;
	if (copy_list(list, n, &keep) == 0) {
		pthread_mutex_lock(&reg->cache_lock);
		/* Dropped meanwhile: what was read may predate the change. */
		if (reg->cache_generation == generation) {
			free(reg->cache);
			reg->cache = keep;
			reg->cache_count = n;
			cache_index_build(reg);
			reg->cache_at_ms = read_at;
			keep = NULL;
		}
		pthread_mutex_unlock(&reg->cache_lock);
		free(keep);
	}
	*out = list;
	*count = n;
	return 0;
}

/* Live and total counts of what @list_fn returns. */
static int count_of(struct efs_registry *reg,
		    int (*list_fn)(struct efs_registry *, struct efs_worker_status **, size_t *),
		    size_t *alive, size_t *total)
{
	struct efs_worker_status *list;
	size_t n, live = 0;
	int r = list_fn(reg, &list, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		live += list[i].alive;
	free(list);
	*alive = live;
	*total = n;
	return 0;
}

int efs_registry_count_cached(struct efs_registry *reg, size_t *alive, size_t *total)
{
	return count_of(reg, efs_registry_list_cached, alive, total);
}

int efs_registry_count(struct efs_registry *reg, size_t *alive, size_t *total)
{
	return count_of(reg, efs_registry_list, alive, total);
}
