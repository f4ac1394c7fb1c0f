/* SPDX-License-Identifier: MIT */
/* config.h - typed reads of environment variables, with one-line errors.
 *
 * Every getter returns 0 and sets *out, or returns -EINVAL and writes one
 * line naming the variable into @err ("CHUNK_SIZE: 'abc' is not a number").
 * An empty variable counts as unset. The daemons print that line and exit
 * with status 2 (EFS_EXIT_CONFIG): they never run half configured.
 */
#ifndef ECHOFS_CONFIG_H
#define ECHOFS_CONFIG_H

#include "echofs/common.h"
#include "echofs/log.h"

#include <stdbool.h>
#include <stdint.h>

#define EFS_EXIT_CONFIG 2
/* A start-up refusal: room for a message naming a file under a long data
 * directory (a PATH_MAX path would not fit any message; a few hundred
 * bytes of path do). */
#define EFS_CONFIG_ERR_LEN 1024

/* A string; @def when unset (may be NULL). With @required an unset
 * variable is an error. *out points into the environment or at @def. */
int efs_env_string(const char *name, const char *def, bool required, const char **out,
		   char *err, size_t errlen);

/* An unsigned integer in [@min, @max]; @def when unset. With @sizes the
 * suffixes K, M, G, T (binary) are accepted: CHUNK_SIZE=4M. */
int efs_env_u64(const char *name, uint64_t def, uint64_t min, uint64_t max, bool sizes,
		uint64_t *out, char *err, size_t errlen);

/* A TCP port 1..65535. */
int efs_env_port(const char *name, uint16_t def, uint16_t *out, char *err, size_t errlen);

/* Who sees the cluster's internal topology (worker URLs and capacities,
 * cluster-wide totals): TOPOLOGY_VISIBLE_TO, docs/API.md "Who sees what". */
enum efs_topology_audience {
	EFS_TOPOLOGY_USERS = 0, /* "users": every signed-in user (the contract's default) */
	EFS_TOPOLOGY_OPERATORS, /* "operators": the cluster secret or an admin token */
};

/* "users" or "operators" into *out (@def when unset). 0, or -EINVAL with
 * one line in @err. */
int efs_env_topology(const char *name, enum efs_topology_audience def,
		     enum efs_topology_audience *out, char *err, size_t errlen);

/* LOG_LEVEL-style level name. */
int efs_env_log_level(const char *name, enum efs_log_level def, enum efs_log_level *out,
		      char *err, size_t errlen);

/* A listen address: an IPv4 or IPv6 literal (or "localhost"). The parsed
 * address is written to @addr (a struct sockaddr_storage) and its length
 * to @addrlen. */
int efs_env_listen_host(const char *name, const char *def, uint16_t port, void *addr,
			unsigned *addrlen, char *err, size_t errlen);

/* TLS files, from TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE; a NULL
 * member is an unset variable. */
struct efs_tls_config {
	const char *cert_file; /* PEM: this server's certificate (chain) */
	const char *key_file;  /* PEM: its private key */
	const char *ca_file;   /* PEM: the CAs that https peers are verified with */
};

/* Reads the three TLS variables into *out. -EINVAL, naming the variable,
 * when only one of TLS_CERT_FILE and TLS_KEY_FILE is set, when a named
 * file cannot be opened for reading or is not a regular file, or when the
 * certificate and key are not a valid pair (efs_http_tls_check). */
int efs_env_tls(struct efs_tls_config *out, char *err, size_t errlen);

/* True when @url is an absolute http:// or https:// URL without spaces,
 * at most 512 characters long. */
bool efs_http_url_valid(const char *url);

#endif
