/* SPDX-License-Identifier: MIT */
/* fuzz_control.c - libFuzzer harness for the gRPC control plane's messages
 * (proto/echofs.proto, decoded by protobuf-c's generated code): what the
 * master reads from a worker's Connect stream and Register call
 * (src/master/control.c), and what a worker reads from the master
 * (src/worker/heartbeat.c).
 *
 * Input: one byte choosing the message (WorkerMessage, RegisterRequest,
 * MasterMessage), then its bytes. Checked beyond the sanitizers:
 *   - a message that decodes has the body its case names (never NULL), and
 *     every string in it is NUL-terminated within the input's length;
 *   - it encodes again, and when that encoding decodes (protobuf-c keeps
 *     unknown fields verbatim, even a field number 0 it let through, which
 *     then does not decode), it encodes to the same bytes: one canonical
 *     form. Nothing in EchoFS re-encodes what it read; the check guards
 *     the generated code we ship.
 * Build and run: make fuzz; bin/fuzz_control tests/fuzz/corpus/control
 */
#include "echofs.pb-c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t input)
{
	if (!s || strnlen(s, input + 1) > input)
		abort();
}

static void check_space(const Echofs__V1__Space *space)
{
	(void)space; /* numbers only: any value decodes; control.c checks them */
}

static void check_worker(const Echofs__V1__WorkerMessage *m, size_t input)
{
	switch (m->body_case) {
	case ECHOFS__V1__WORKER_MESSAGE__BODY_HELLO:
		if (!m->hello)
			abort();
		check_string(m->hello->worker_id, input);
		check_string(m->hello->cluster_id, input);
		break;
	case ECHOFS__V1__WORKER_MESSAGE__BODY_HEARTBEAT:
		if (!m->heartbeat)
			abort();
		if (m->heartbeat->space)
			check_space(m->heartbeat->space);
		break;
	case ECHOFS__V1__WORKER_MESSAGE__BODY_DELTA:
		if (!m->delta)
			abort();
		for (size_t i = 0; i < m->delta->n_added; i++)
			check_string(m->delta->added[i], input);
		for (size_t i = 0; i < m->delta->n_removed; i++)
			check_string(m->delta->removed[i], input);
		for (size_t i = 0; i < m->delta->n_corrupt; i++)
			check_string(m->delta->corrupt[i], input);
		break;
	case ECHOFS__V1__WORKER_MESSAGE__BODY_ACK:
		if (!m->ack)
			abort();
		check_string(m->ack->error, input);
		break;
	default:
		break;
	}
}

static void check_master(const Echofs__V1__MasterMessage *m, size_t input)
{
	switch (m->body_case) {
	case ECHOFS__V1__MASTER_MESSAGE__BODY_DELETE_CHUNKS:
		if (!m->delete_chunks)
			abort();
		for (size_t i = 0; i < m->delete_chunks->n_chunk_ids; i++)
			check_string(m->delete_chunks->chunk_ids[i], input);
		break;
	case ECHOFS__V1__MASTER_MESSAGE__BODY_COPY_CHUNK:
		if (!m->copy_chunk)
			abort();
		check_string(m->copy_chunk->chunk_id, input);
		check_string(m->copy_chunk->from_url, input);
		break;
	case ECHOFS__V1__MASTER_MESSAGE__BODY_SET_HEARTBEAT_INTERVAL:
		if (!m->set_heartbeat_interval)
			abort();
		break;
	case ECHOFS__V1__MASTER_MESSAGE__BODY_SEND_FULL_REPORT:
		if (!m->send_full_report)
			abort();
		break;
	case ECHOFS__V1__MASTER_MESSAGE__BODY_WRONG_CLUSTER:
		if (!m->wrong_cluster)
			abort();
		check_string(m->wrong_cluster->cluster_id, input);
		break;
	default:
		break;
	}
}

/* Encodes @m, decodes that and encodes it again: the two encodings must be
 * equal. */
#define ROUND_TRIP(m, prefix, input)                                                               \
	do {                                                                                       \
		size_t n1 = prefix##__get_packed_size(m);                                          \
		uint8_t *b1 = malloc(n1 ? n1 : 1);                                                 \
		if (!b1)                                                                           \
			break;                                                                     \
		if (prefix##__pack(m, b1) != n1)                                                   \
			abort();                                                                   \
		__typeof__(m) again = prefix##__unpack(NULL, n1, b1);                              \
		if (!again) { /* an unknown field protobuf-c kept verbatim (field 0) */            \
			free(b1);                                                                  \
			break;                                                                     \
		}                                                                                  \
		size_t n2 = prefix##__get_packed_size(again);                                      \
		uint8_t *b2 = malloc(n2 ? n2 : 1);                                                 \
		if (b2) {                                                                          \
			if (prefix##__pack(again, b2) != n2 || n2 != n1 ||                         \
			    memcmp(b1, b2, n1) != 0)                                               \
				abort();                                                           \
			free(b2);                                                                  \
		}                                                                                  \
		prefix##__free_unpacked(again, NULL);                                              \
		free(b1);                                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t kind = data[0] % 3;
	data++;
	size--;
	if (kind == 0) {
		Echofs__V1__WorkerMessage *m = echofs__v1__worker_message__unpack(NULL, size, data);
		if (m) {
			check_worker(m, size);
			ROUND_TRIP(m, echofs__v1__worker_message, size);
			echofs__v1__worker_message__free_unpacked(m, NULL);
		}
	} else if (kind == 1) {
		Echofs__V1__RegisterRequest *m =
		    echofs__v1__register_request__unpack(NULL, size, data);
		if (m) {
			check_string(m->url, size);
			check_string(m->worker_id, size);
			check_string(m->cluster_id, size);
			ROUND_TRIP(m, echofs__v1__register_request, size);
			echofs__v1__register_request__free_unpacked(m, NULL);
		}
	} else {
		Echofs__V1__MasterMessage *m = echofs__v1__master_message__unpack(NULL, size, data);
		if (m) {
			check_master(m, size);
			ROUND_TRIP(m, echofs__v1__master_message, size);
			echofs__v1__master_message__free_unpacked(m, NULL);
		}
	}
	return 0;
}
