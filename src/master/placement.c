/* SPDX-License-Identifier: MIT */
/* placement.c - weighted random choice of live workers for new replicas:
 * the least used zones first, slow workers last. */
#include "master/placement.h"
#include "echofs/hash.h"
#include "echofs/util.h"

#include <stdatomic.h>

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void efs_placement_init(struct efs_placement *p, struct efs_registry *registry)
{
	memset(p, 0, sizeof(*p));
	p->registry = registry;
	p->slow_min_rate = EFS_PLACEMENT_DEFAULT_SLOW_MIN_RATE;
	p->slow_avoid_ms = EFS_PLACEMENT_DEFAULT_SLOW_AVOID_MS;
	pthread_mutex_init(&p->load_lock, NULL);
}

void efs_placement_set_slowness(struct efs_placement *p, int64_t min_rate, int64_t avoid_ms)
{
	p->slow_min_rate = min_rate;
	p->slow_avoid_ms = avoid_ms;
}

void efs_placement_release(struct efs_placement *p)
{
	if (p->registry)
		pthread_mutex_destroy(&p->load_lock);
	p->registry = NULL;
}

void efs_placement_load_add(struct efs_placement *p, const char *worker_id, int delta)
{
	pthread_mutex_lock(&p->load_lock);
	for (size_t i = 0; i < EFS_PLACEMENT_LOAD_SLOTS; i++) {
		if (strcmp(p->load[i].worker_id, worker_id) == 0 ||
		    p->load[i].worker_id[0] == '\0') {
			efs_strlcpy(p->load[i].worker_id, worker_id, sizeof(p->load[i].worker_id));
			p->load[i].inflight += delta;
			if (p->load[i].inflight < 0)
				p->load[i].inflight = 0;
			break;
		}
	}
	pthread_mutex_unlock(&p->load_lock);
}

/* The slot of @worker_id, claimed when it has none; -1 when the table
 * is full. Under load_lock. */
static int slot_of(struct efs_placement *p, const char *worker_id, bool claim)
{
	for (int i = 0; i < EFS_PLACEMENT_LOAD_SLOTS; i++) {
		if (strcmp(p->load[i].worker_id, worker_id) == 0)
			return i;
		if (p->load[i].worker_id[0] == '\0') {
			if (!claim)
				return -1;
			efs_strlcpy(p->load[i].worker_id, worker_id, sizeof(p->load[i].worker_id));
			return i;
		}
	}
	return -1;
}

bool efs_placement_note_slow(struct efs_placement *p, const char *worker_id, bool write)
{
	atomic_fetch_add(write ? &p->slow_abandons_write : &p->slow_abandons_read, 1);
	return efs_placement_mark_slow(p, worker_id);
}

bool efs_placement_finished_slowly(const struct efs_placement *p, uint64_t bytes,
				   int64_t elapsed_ms)
{
	return p->slow_min_rate > 0 && elapsed_ms >= 1000 &&
	       bytes >= EFS_PLACEMENT_SLOW_JUDGE_BYTES &&
	       (double)bytes * 1000.0 < (double)p->slow_min_rate * (double)elapsed_ms;
}

bool efs_placement_mark_slow(struct efs_placement *p, const char *worker_id)
{
	if (p->slow_avoid_ms <= 0)
		return false;
	int64_t now = efs_now_ms();
	bool was = false;
	pthread_mutex_lock(&p->load_lock);
	int i = slot_of(p, worker_id, true);
	if (i >= 0) {
		was = p->load[i].slow_until_ms > now;
		p->load[i].slow_until_ms = now + p->slow_avoid_ms;
	}
	pthread_mutex_unlock(&p->load_lock);
	return i >= 0 && !was;
}

int64_t efs_placement_slow_for_ms(struct efs_placement *p, const char *worker_id)
{
	int64_t left = 0, now = efs_now_ms();
	pthread_mutex_lock(&p->load_lock);
	int i = slot_of(p, worker_id, false);
	if (i >= 0 && p->load[i].slow_until_ms > now)
		left = p->load[i].slow_until_ms - now;
	pthread_mutex_unlock(&p->load_lock);
	return left;
}

int efs_placement_load(struct efs_placement *p, const char *worker_id)
{
	int n = 0;
	pthread_mutex_lock(&p->load_lock);
	for (size_t i = 0; i < EFS_PLACEMENT_LOAD_SLOTS && p->load[i].worker_id[0]; i++) {
		if (strcmp(p->load[i].worker_id, worker_id) == 0) {
			n = p->load[i].inflight;
			break;
		}
	}
	pthread_mutex_unlock(&p->load_lock);
	return n;
}

static bool excluded(const struct efs_worker_info *w, const struct efs_target *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].worker_id, w->worker_id) == 0 || strcmp(list[i].url, w->url) == 0)
			return true;
	return false;
}

int efs_placement_live_count(struct efs_placement *p, size_t *alive)
{
	size_t total;
	return efs_registry_count_cached(p->registry, alive, &total);
}

int efs_placement_heard_digest(struct efs_placement *p, int64_t heard_after_ms, uint64_t *digest)
{
	struct efs_worker_status *list;
	size_t n;
	int r = efs_registry_list_cached(p->registry, &list, &n);
	if (r < 0)
		return r;
	/* A sum of the ids' hashes: the list's order does not matter. */
	uint64_t d = 0;
	for (size_t i = 0; i < n; i++)
		if (list[i].info.last_heartbeat_ms > heard_after_ms)
			d += efs_fnv1a(EFS_FNV1A_INIT, list[i].info.worker_id,
				       strlen(list[i].info.worker_id));
	free(list);
	*digest = d;
	return 0;
}

int efs_placement_choose(struct efs_placement *p, unsigned want, uint64_t need_bytes,
			 const struct efs_target *exclude, size_t exclude_count,
			 struct efs_target *out)
{
	size_t candidates;
	return efs_placement_choose_spread(p, want, need_bytes, exclude, exclude_count, NULL, 0,
					   out, &candidates);
}

int efs_placement_choose_counted(struct efs_placement *p, unsigned want, uint64_t need_bytes,
				 const struct efs_target *exclude, size_t exclude_count,
				 struct efs_target *out, size_t *candidates)
{
	return efs_placement_choose_spread(p, want, need_bytes, exclude, exclude_count, NULL, 0,
					   out, candidates);
}

/* Numbers the zones of @list into @zone_of (n entries): workers with the
 * same non-empty zone share a number, a worker without one has a number
 * of its own. Returns 0 or -ENOMEM. */
static int number_zones(const struct efs_worker_status *list, size_t n, size_t *zone_of)
{
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		zone_of[i] = i;
		any |= list[i].info.zone[0] != '\0';
	}
	if (!any) /* no zones: no table */
		return 0;
	size_t size = 16;
	while (size < 2 * n)
		size *= 2;
	size_t *table = malloc(size * sizeof(*table)); /* a worker index + 1; 0 free */
	if (!table)
		return -ENOMEM;
	memset(table, 0, size * sizeof(*table));
	for (size_t i = 0; i < n; i++) {
		const char *zone = list[i].info.zone;
		if (!zone[0])
			continue;
		for (size_t h = efs_fnv1a(EFS_FNV1A_INIT, zone, strlen(zone)) & (size - 1);;
		     h = (h + 1) & (size - 1)) {
			if (table[h] == 0) {
				table[h] = i + 1;
				break;
			}
			if (strcmp(list[table[h] - 1].info.zone, zone) == 0) {
				zone_of[i] = zone_of[table[h] - 1];
				break;
			}
		}
	}
	free(table);
	return 0;
}

int efs_placement_choose_spread(struct efs_placement *p, unsigned want, uint64_t need_bytes,
				const struct efs_target *held, size_t held_count,
				const struct efs_target *exclude, size_t exclude_count,
				struct efs_target *out, size_t *candidates)
{
	struct efs_worker_status *list;
	size_t n;
	unsigned chosen = 0;
	int r = efs_registry_list_cached(p->registry, &list, &n);
	if (r < 0)
		return r;
	double *weight = calloc(n ? n : 1, sizeof(*weight));
	bool *slow = calloc(n ? n : 1, sizeof(*slow));
	size_t *zone_of = calloc(n ? n : 1, sizeof(*zone_of));
	unsigned *in_zone = calloc(n ? n : 1, sizeof(*in_zone)); /* by zone number */
	if (!weight || !slow || !zone_of || !in_zone || number_zones(list, n, zone_of) < 0) {
		r = -ENOMEM;
		goto out;
	}
	/* The zones the chunk is in already: its holders' (dead ones too:
	 * the rows are what the chunk will have once they come back). */
	for (size_t i = 0; i < n; i++)
		for (size_t h = 0; h < held_count; h++)
			if (strcmp(held[h].worker_id, list[i].info.worker_id) == 0) {
				in_zone[zone_of[i]]++;
				break;
			}
	*candidates = 0;
	for (size_t i = 0; i < n; i++) {
		const struct efs_worker_info *w = &list[i].info;
		if (!list[i].alive || w->free_bytes < need_bytes + EFS_PLACEMENT_FREE_MARGIN ||
		    excluded(w, held, held_count) || excluded(w, exclude, exclude_count))
			continue;
		/* +1 MiB keeps nearly full workers selectable but rare. */
		weight[i] = ((double)w->free_bytes + 1048576.0) /
			    (1.0 + efs_placement_load(p, w->worker_id));
		slow[i] = efs_placement_slow_for_ms(p, w->worker_id) > 0;
		(*candidates)++;
	}
	while (chosen < want) {
		/* The zones holding the fewest of the chunk's copies first
		 * (a zone not holding one before any other): the number of
		 * zones used is the most the candidates allow, and no zone
		 * gets a second copy while another that could take one has
		 * none. Among the workers of those zones, the ones that are
		 * not slow first; slow ones only when none of those is left. */
		unsigned fewest = UINT_MAX;
		for (size_t i = 0; i < n; i++)
			if (weight[i] > 0 && in_zone[zone_of[i]] < fewest)
				fewest = in_zone[zone_of[i]];
		double total = 0;
		bool tier_slow = false;
		for (size_t i = 0; i < n; i++)
			if (in_zone[zone_of[i]] == fewest)
				total += slow[i] ? 0 : weight[i];
		if (total <= 0) {
			tier_slow = true;
			for (size_t i = 0; i < n; i++)
				if (in_zone[zone_of[i]] == fewest)
					total += slow[i] ? weight[i] : 0;
		}
		if (total <= 0)
			break;
		uint64_t rnd;
		efs_random_bytes(&rnd, sizeof(rnd));
		double pick = (double)(rnd >> 11) / (double)(1ULL << 53) * total;
		size_t i = 0;
		for (; i < n; i++) {
			if (weight[i] <= 0 || slow[i] != tier_slow || in_zone[zone_of[i]] != fewest)
				continue;
			if (pick < weight[i])
				break;
			pick -= weight[i];
		}
		if (i == n) /* rounding: take the last candidate */
			for (i = n; i-- > 0 && (weight[i] <= 0 || slow[i] != tier_slow ||
						in_zone[zone_of[i]] != fewest);)
				;
		efs_strlcpy(out[chosen].worker_id, list[i].info.worker_id,
			    sizeof(out[chosen].worker_id));
		efs_strlcpy(out[chosen].url, list[i].info.url, sizeof(out[chosen].url));
		chosen++;
		in_zone[zone_of[i]]++;
		/* Never twice the same worker or the same URL. */
		for (size_t j = 0; j < n; j++)
			if (strcmp(list[j].info.url, list[i].info.url) == 0)
				weight[j] = 0;
	}
	r = (int)chosen;
out:
	free(weight);
	free(slow);
	free(zone_of);
	free(in_zone);
	free(list);
	return r;
}
