/* SPDX-License-Identifier: MIT */
/* grpc_sim_client.c - simulated workers on gRPC streams, for
 * bench/grpc_sim.py: one thread and one Connect stream per worker id, each
 * a Hello then a Heartbeat every interval, through rpc.c's client (the
 * one the workers use), so a thousand streams cost this process little
 * and arrive on time.
 *
 *     CLUSTER_SECRET=... grpc_sim_client HOST:PORT IDS_FILE INTERVAL_MS
 *
 * IDS_FILE: registered worker ids, one a line (at most SIM_MAX). Prints
 * "open N" once every stream is open (or "failed ID: why" and exits 1),
 * then beats until killed: SIGKILL is the simulated workers' death (the
 * kernel closes their connections). The beats of worker i start at
 * i * INTERVAL_MS / N, so they spread over the interval.
 */
#include "echofs.pb-c.h"
#include "echofs/rpc.h"
#include "echofs/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIM_MAX 20000
#define PATH_CONNECT "/echofs.v1.ControlPlane/Connect"
#define TIMEOUT_MS 30000

struct sim {
	const char *target;
	char auth[600];
	int64_t interval_ms;
	size_t count;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t opened;
	int failed;
};

struct sim_worker {
	struct sim *sim;
	size_t index;
	char id[EFS_ID_MAX + 1];
};

static int send_message(struct efs_rpc_stream *s, const Echofs__V1__WorkerMessage *msg)
{
	uint8_t buf[256];
	size_t len = echofs__v1__worker_message__get_packed_size(msg);
	if (len > sizeof(buf))
		return -EMSGSIZE;
	echofs__v1__worker_message__pack(msg, buf);
	return efs_rpc_stream_send(s, buf, len, TIMEOUT_MS);
}

static void sleep_until(int64_t mono_ms)
{
	struct timespec ts = {.tv_sec = mono_ms / 1000, .tv_nsec = (mono_ms % 1000) * 1000000};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void *worker_main(void *arg)
{
	struct sim_worker *w = arg;
	struct sim *sim = w->sim;
	struct efs_rpc_stream *s = NULL;
	char why[EFS_RPC_WHY_MAX + 1] = "";
	Echofs__V1__WorkerMessage msg = ECHOFS__V1__WORKER_MESSAGE__INIT;
	Echofs__V1__Hello hello = ECHOFS__V1__HELLO__INIT;
	Echofs__V1__Heartbeat beat = ECHOFS__V1__HEARTBEAT__INIT;
	Echofs__V1__Space space = ECHOFS__V1__SPACE__INIT;
	struct efs_buf in;

	int r = efs_rpc_stream_open(sim->target, PATH_CONNECT, sim->auth, TIMEOUT_MS, &s, why,
				    sizeof(why));
	if (r == 0) {
		hello.worker_id = w->id;
		msg.body_case = ECHOFS__V1__WORKER_MESSAGE__BODY_HELLO;
		msg.hello = &hello;
		r = send_message(s, &msg);
	}
	pthread_mutex_lock(&sim->lock);
	if (r < 0) {
		fprintf(stdout, "failed %s: %s %s\n", w->id, strerror(-r), why);
		fflush(stdout);
		sim->failed = 1;
	}
	sim->opened++;
	pthread_cond_broadcast(&sim->cond);
	pthread_mutex_unlock(&sim->lock);
	if (r < 0)
		return NULL;

	space.capacity_bytes = 1ULL << 40;
	space.free_bytes = 1ULL << 39;
	space.chunk_count = 1000;
	beat.space = &space;
	msg.body_case = ECHOFS__V1__WORKER_MESSAGE__BODY_HEARTBEAT;
	msg.heartbeat = &beat;
	efs_buf_init(&in, EFS_RPC_MESSAGE_MAX);
	int64_t next = efs_mono_ms() + (int64_t)w->index * sim->interval_ms / (int64_t)sim->count;
	for (;;) {
		sleep_until(next);
		next += sim->interval_ms;
		beat.sequence++;
		if ((r = send_message(s, &msg)) < 0)
			break;
		/* what the master sent meanwhile (its interval), not kept */
		while (efs_rpc_stream_recv(s, 0, &in) > 0)
			;
	}
	fprintf(stdout, "ended %s: %s\n", w->id, strerror(-r));
	fflush(stdout);
	efs_buf_release(&in);
	efs_rpc_stream_close(s);
	return NULL;
}

int main(int argc, char **argv)
{
	static struct sim sim;
	static struct sim_worker workers[SIM_MAX];
	const char *secret = getenv("CLUSTER_SECRET");
	char line[128];
	pthread_attr_t attr;

	if (argc != 4 || !secret) {
		fprintf(stderr, "usage: CLUSTER_SECRET=... %s HOST:PORT IDS_FILE INTERVAL_MS\n",
			argv[0]);
		return 2;
	}
	sim.target = argv[1];
	sim.interval_ms = strtoll(argv[3], NULL, 10);
	snprintf(sim.auth, sizeof(sim.auth), "Bearer %s", secret);
	pthread_mutex_init(&sim.lock, NULL);
	pthread_cond_init(&sim.cond, NULL);
	FILE *f = fopen(argv[2], "r");
	if (!f || sim.interval_ms <= 0) {
		fprintf(stderr, "cannot read %s (or INTERVAL_MS is not positive)\n", argv[2]);
		return 2;
	}
	while (sim.count < SIM_MAX && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0])
			continue;
		workers[sim.count].sim = &sim;
		workers[sim.count].index = sim.count;
		efs_strlcpy(workers[sim.count].id, line, sizeof(workers[sim.count].id));
		sim.count++;
	}
	fclose(f);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (size_t i = 0; i < sim.count; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, worker_main, &workers[i]) != 0) {
			fprintf(stdout, "failed: cannot start thread %zu\n", i);
			return 1;
		}
		pthread_detach(t);
	}
	pthread_mutex_lock(&sim.lock);
	while (sim.opened < sim.count)
		pthread_cond_wait(&sim.cond, &sim.lock);
	int failed = sim.failed;
	pthread_mutex_unlock(&sim.lock);
	if (failed)
		return 1;
	fprintf(stdout, "open %zu\n", sim.count);
	fflush(stdout);
	for (;;)
		sleep_until(efs_mono_ms() + 3600000);
}
