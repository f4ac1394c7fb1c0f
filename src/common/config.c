/* SPDX-License-Identifier: MIT */
/* config.c - typed reads of environment variables. */
#include "echofs/config.h"
#include "echofs/http_server.h"
#include "echofs/util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int config_error(char *err, size_t errlen, const char *fmt, ...) EFS_PRINTF(3, 4);

static int config_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const char *env_get(const char *name)
{
	const char *v = getenv(name);
	return (v && *v) ? v : NULL;
}

int efs_env_string(const char *name, const char *def, bool required, const char **out,
		   char *err, size_t errlen)
{
	const char *v = env_get(name);
	if (!v && required)
		return config_error(err, errlen, "%s is required but not set", name);
	*out = v ? v : def;
	return 0;
}

int efs_env_u64(const char *name, uint64_t def, uint64_t min, uint64_t max, bool sizes,
		uint64_t *out, char *err, size_t errlen)
{
	const char *v = env_get(name);
	uint64_t value;
	if (!v) {
		*out = def;
		return 0;
	}
	int r = efs_parse_u64(v, sizes, &value);
	if (r == -ERANGE || (r == 0 && (value < min || value > max)))
		return config_error(err, errlen, "%s: '%.64s' is out of range (%llu..%llu)", name,
				    v, (unsigned long long)min, (unsigned long long)max);
	if (r < 0)
		return config_error(err, errlen, "%s: '%.64s' is not a %s", name, v,
				    sizes ? "size (bytes, or with K/M/G suffix)" : "number");
	*out = value;
	return 0;
}

int efs_env_port(const char *name, uint16_t def, uint16_t *out, char *err, size_t errlen)
{
	uint64_t v;
	int r = efs_env_u64(name, def, 1, 65535, false, &v, err, errlen);
	if (r < 0)
		return r;
	*out = (uint16_t)v;
	return 0;
}

int efs_env_log_level(const char *name, enum efs_log_level def, enum efs_log_level *out,
		      char *err, size_t errlen)
{
	const char *v = env_get(name);
	if (!v) {
		*out = def;
		return 0;
	}
	if (efs_log_parse_level(v, out) < 0)
		return config_error(err, errlen, "%s: '%.32s' is not one of debug, info, warn, error",
				    name, v);
	return 0;
}

int efs_env_topology(const char *name, enum efs_topology_audience def,
		     enum efs_topology_audience *out, char *err, size_t errlen)
{
	const char *v = env_get(name);
	if (!v)
		*out = def;
	else if (strcmp(v, "users") == 0)
		*out = EFS_TOPOLOGY_USERS;
	else if (strcmp(v, "operators") == 0)
		*out = EFS_TOPOLOGY_OPERATORS;
	else
		return config_error(err, errlen, "%s: '%.32s' is not one of users, operators", name,
				    v);
	return 0;
}

int efs_env_listen_host(const char *name, const char *def, uint16_t port, void *addr,
			unsigned *addrlen, char *err, size_t errlen)
{
	const char *v = env_get(name);
	struct sockaddr_storage ss;
	if (!v)
		v = def;
	if (strcmp(v, "localhost") == 0)
		v = "127.0.0.1";
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, v, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*addrlen = sizeof(*in4);
	} else if (inet_pton(AF_INET6, v, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*addrlen = sizeof(*in6);
	} else {
		return config_error(err, errlen, "%s: '%.64s' is not an IPv4 or IPv6 address", name,
				    v);
	}
	memcpy(addr, &ss, sizeof(ss));
	return 0;
}

bool efs_http_url_valid(const char *url)
{
	size_t len = strlen(url);
	if (len > 512)
		return false;
	const char *rest;
	if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else
		return false;
	if (!*rest || *rest == '/')
		return false;
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\')
			return false;
	return true;
}

/* A file variable: set, readable, a regular file. */
static int env_file(const char *name, const char **out, char *err, size_t errlen)
{
	const char *v = env_get(name);
	struct stat st;
	*out = NULL;
	if (!v)
		return 0;
	int fd = open(v, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return config_error(err, errlen, "%s: cannot read '%.128s': %s", name, v,
				    strerror(errno));
	int r = fstat(fd, &st);
	close(fd);
	if (r < 0 || !S_ISREG(st.st_mode))
		return config_error(err, errlen, "%s: '%.128s' is not a regular file", name, v);
	*out = v;
	return 0;
}

int efs_env_tls(struct efs_tls_config *out, char *err, size_t errlen)
{
	struct efs_tls_config tls;
	int r;
	if ((r = env_file("TLS_CERT_FILE", &tls.cert_file, err, errlen)) < 0 ||
	    (r = env_file("TLS_KEY_FILE", &tls.key_file, err, errlen)) < 0 ||
	    (r = env_file("TLS_CA_FILE", &tls.ca_file, err, errlen)) < 0)
		return r;
	if (!tls.cert_file != !tls.key_file)
		return config_error(err, errlen,
				    "%s is set but %s is not: HTTPS needs both the certificate "
				    "and its key",
				    tls.cert_file ? "TLS_CERT_FILE" : "TLS_KEY_FILE",
				    tls.cert_file ? "TLS_KEY_FILE" : "TLS_CERT_FILE");
	if (tls.cert_file && (r = efs_http_tls_check(tls.cert_file, tls.key_file, err, errlen)) < 0)
		return -EINVAL;
	*out = tls;
	return 0;
}
