/* SPDX-License-Identifier: MIT */
/* test_config.c - unit tests of the environment readers (config.h) and of
 * the master's and the worker's configuration loaders: defaults, required
 * secrets, malformed and out-of-range values, each refused with one line
 * naming the variable. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "echofs/config.h"
#include "echofs/http_server.h"
#include "echofs/redis.h"
#include "master/config.h"
#include "worker/config.h"

/* Every variable either loader reads. */
static const char *const config_vars[] = {
	"MASTER_HOST",
	"MASTER_PORT",
	"DATABASE_URL",
	"DATA_DIR",
	"REDIS_ADDR",
	"REDIS_TIMEOUT_MS",
	"JWT_SECRET",
	"CLUSTER_SECRET",
	"REPLICATION_FACTOR",
	"STORAGE_POLICY",
	"EC_AFTER",
	"EC_POLICY",
	"EC_MIN_SIZE",
	"EC_CONVERT_BANDWIDTH",
	"CHUNK_SIZE",
	"MIN_CHUNK_SIZE",
	"UPLOAD_MEMORY",
	"UPLOAD_MEMORY_PER_USER",
	"HEADER_TIMEOUT_MS",
	"SHUTDOWN_GRACE_MS",
	"CHUNK_CACHE_SIZE",
	"HISTORY_INTERVAL_MS",
	"KEYS_ENCRYPTION_KEY",
	"MAX_ACCESS_KEYS_PER_USER",
	"LOG_LEVEL",
	"TOPOLOGY_VISIBLE_TO",
	"HEARTBEAT_INTERVAL_MS",
	"WORKER_DEAD_AFTER_MS",
	"REPAIR_AFTER_MS",
	"WORKER_HOST",
	"WORKER_PORT",
	"WORKER_DATA_DIR",
	"WORKER_ADVERTISE_URL",
	"MASTER_URL",
	"WORKER_CAPACITY_BYTES",
	"SCRUB_INTERVAL_MS",
	"TLS_CERT_FILE",
	"TLS_KEY_FILE",
	"TLS_CA_FILE",
	"EFS_TEST_VAR",
	"S3_MULTIPART_EXPIRY",
	"MASTER_HTTP_THREADS",
};

static int env_clear(void **state)
{
	for (size_t i = 0; i < EFS_ARRAY_SIZE(config_vars); i++)
		unsetenv(config_vars[i]);
	return 0;
}

static void env_set(const char *name, const char *value)
{
	assert_int_equal(setenv(name, value, 1), 0);
}

/* The secrets both daemons require, so a test can focus on one variable. */
static void env_secrets(void)
{
	env_set("JWT_SECRET", "jwt-test-secret");
	env_set("CLUSTER_SECRET", "cluster-test-secret");
}

/* Asserts @err is a single line that mentions @name. */
static void assert_err_names(const char *err, const char *name)
{
	if (!strstr(err, name))
		print_error("error line \"%s\" does not name %s\n", err, name);
	assert_non_null(strstr(err, name));
	assert_null(strchr(err, '\n'));
}

/* Loads the master's config and asserts it is refused because of @name. */
static void master_refused(const char *name)
{
	struct efs_master_config cfg;
	char err[EFS_CONFIG_ERR_LEN] = "";
	assert_int_equal(efs_master_config_load(&cfg, err, sizeof(err)), -EINVAL);
	assert_err_names(err, name);
}

static void master_loads(struct efs_master_config *cfg)
{
	char err[EFS_CONFIG_ERR_LEN] = "";
	int r = efs_master_config_load(cfg, err, sizeof(err));
	if (r != 0)
		print_error("efs_master_config_load: %d: %s\n", r, err);
	assert_int_equal(r, 0);
}

static void worker_refused(const char *name)
{
	struct efs_worker_config cfg;
	char err[EFS_CONFIG_ERR_LEN] = "";
	assert_int_equal(efs_worker_config_load(&cfg, err, sizeof(err)), -EINVAL);
	assert_err_names(err, name);
}

static void worker_loads(struct efs_worker_config *cfg)
{
	char err[EFS_CONFIG_ERR_LEN] = "";
	int r = efs_worker_config_load(cfg, err, sizeof(err));
	if (r != 0)
		print_error("efs_worker_config_load: %d: %s\n", r, err);
	assert_int_equal(r, 0);
}

/* ---- the generic readers ----------------------------------------------- */

static void test_env_string(void **state)
{
	const char *v = NULL;
	char err[EFS_CONFIG_ERR_LEN] = "";

	assert_int_equal(efs_env_string("EFS_TEST_VAR", "dflt", false, &v, err, sizeof(err)), 0);
	assert_string_equal(v, "dflt");
	assert_int_equal(efs_env_string("EFS_TEST_VAR", NULL, false, &v, err, sizeof(err)), 0);
	assert_null(v);

	env_set("EFS_TEST_VAR", "value");
	assert_int_equal(efs_env_string("EFS_TEST_VAR", "dflt", true, &v, err, sizeof(err)), 0);
	assert_string_equal(v, "value");

	/* empty counts as unset */
	env_set("EFS_TEST_VAR", "");
	v = "untouched";
	assert_int_equal(efs_env_string("EFS_TEST_VAR", NULL, true, &v, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(v, "untouched");
	assert_err_names(err, "EFS_TEST_VAR");
	assert_int_equal(efs_env_string("EFS_TEST_VAR", "dflt", false, &v, err, sizeof(err)), 0);
	assert_string_equal(v, "dflt");
}

static void test_env_u64(void **state)
{
	uint64_t v = 99;
	char err[EFS_CONFIG_ERR_LEN] = "";

	assert_int_equal(efs_env_u64("EFS_TEST_VAR", 5, 1, 10, false, &v, err, sizeof(err)), 0);
	assert_true(v == 5);

	env_set("EFS_TEST_VAR", "10");
	assert_int_equal(efs_env_u64("EFS_TEST_VAR", 5, 1, 10, false, &v, err, sizeof(err)), 0);
	assert_true(v == 10);

	v = 99;
	env_set("EFS_TEST_VAR", "11");
	assert_int_equal(efs_env_u64("EFS_TEST_VAR", 5, 1, 10, false, &v, err, sizeof(err)),
			 -EINVAL);
	assert_err_names(err, "EFS_TEST_VAR");
	assert_true(v == 99);

	env_set("EFS_TEST_VAR", "2K");
	assert_int_equal(efs_env_u64("EFS_TEST_VAR", 5, 1, 4096, false, &v, err, sizeof(err)),
			 -EINVAL);
	assert_err_names(err, "EFS_TEST_VAR");
	assert_int_equal(efs_env_u64("EFS_TEST_VAR", 5, 1, 4096, true, &v, err, sizeof(err)), 0);
	assert_true(v == 2048);

	env_set("EFS_TEST_VAR", "99999999999999999999999");
	assert_int_equal(efs_env_u64("EFS_TEST_VAR", 5, 0, UINT64_MAX, false, &v, err,
				     sizeof(err)),
			 -EINVAL);
	assert_err_names(err, "EFS_TEST_VAR");
}

static void test_env_listen_host(void **state)
{
	struct sockaddr_storage ss;
	unsigned len = 0;
	char err[EFS_CONFIG_ERR_LEN] = "";

	assert_int_equal(efs_env_listen_host("EFS_TEST_VAR", "0.0.0.0", 8080, &ss, &len, err,
					     sizeof(err)),
			 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
	assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));

	env_set("EFS_TEST_VAR", "localhost");
	assert_int_equal(efs_env_listen_host("EFS_TEST_VAR", "0.0.0.0", 1, &ss, &len, err,
					     sizeof(err)),
			 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

	env_set("EFS_TEST_VAR", "::1");
	assert_int_equal(efs_env_listen_host("EFS_TEST_VAR", "0.0.0.0", 9000, &ss, &len, err,
					     sizeof(err)),
			 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9000);
	assert_true(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));

	env_set("EFS_TEST_VAR", "example.com");
	assert_int_equal(efs_env_listen_host("EFS_TEST_VAR", "0.0.0.0", 1, &ss, &len, err,
					     sizeof(err)),
			 -EINVAL);
	assert_err_names(err, "EFS_TEST_VAR");
}

static void test_http_url_valid(void **state)
{
	char long_url[600];

	assert_true(efs_http_url_valid("http://a:1"));
	assert_true(efs_http_url_valid("https://master.example:8443/base"));
	assert_false(efs_http_url_valid(""));
	assert_false(efs_http_url_valid("ftp://a"));
	assert_false(efs_http_url_valid("http://"));
	assert_false(efs_http_url_valid("http:///x"));
	assert_false(efs_http_url_valid("HTTP//a"));
	assert_false(efs_http_url_valid("http://a b"));
	assert_false(efs_http_url_valid("http://a\"b"));
	assert_false(efs_http_url_valid("http://a\\b"));
	assert_false(efs_http_url_valid("http://a\n"));

	memset(long_url, 'a', sizeof(long_url));
	memcpy(long_url, "http://", 7);
	long_url[512] = '\0';
	assert_true(efs_http_url_valid(long_url));
	long_url[512] = 'a';
	long_url[513] = '\0';
	assert_false(efs_http_url_valid(long_url));
}

/* ---- the master --------------------------------------------------------- */

static void test_master_defaults(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_int_equal(cfg.port, 8080);
	assert_string_equal(cfg.host, "0.0.0.0");
	assert_int_equal(cfg.listen_addr.ss_family, AF_INET);
	assert_int_equal(cfg.listen_addrlen, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.listen_addr)->sin_port), 8080);
	assert_true(cfg.chunk_size == 1048576);
	assert_int_equal(cfg.replication_factor, 3);
	assert_string_equal(cfg.data_dir, "./data/master");
	assert_null(cfg.database_url);
	assert_null(cfg.redis_addr);
	assert_int_equal(cfg.redis_timeout_ms, EFS_REDIS_DEFAULT_TIMEOUT_MS);
	assert_string_equal(cfg.jwt_secret, "jwt-test-secret");
	assert_string_equal(cfg.cluster_secret, "cluster-test-secret");
	assert_int_equal(cfg.log_level, EFS_LOG_INFO);
	assert_int_equal(cfg.heartbeat_interval_ms, EFS_MASTER_DEFAULT_HEARTBEAT_MS);
	assert_int_equal(cfg.worker_dead_after_ms, EFS_MASTER_DEFAULT_DEAD_AFTER_MS);
	assert_int_equal(cfg.repair_after_ms, EFS_MASTER_DEFAULT_REPAIR_AFTER_MS);
	assert_true(cfg.worker_dead_after_ms > cfg.heartbeat_interval_ms);
}

static void test_master_overrides(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	env_set("MASTER_HOST", "::1");
	env_set("MASTER_PORT", "9090");
	env_set("DATABASE_URL", "sqlite:/tmp/x.db");
	env_set("DATA_DIR", "/var/lib/echofs");
	env_set("REDIS_ADDR", "127.0.0.1:6379");
	env_set("REDIS_TIMEOUT_MS", "750");
	env_set("REPLICATION_FACTOR", "2");
	env_set("CHUNK_SIZE", "4M");
	env_set("LOG_LEVEL", "DEBUG");
	env_set("HEARTBEAT_INTERVAL_MS", "500");
	env_set("WORKER_DEAD_AFTER_MS", "1500");
	env_set("REPAIR_AFTER_MS", "0");
	master_loads(&cfg);
	assert_int_equal(cfg.port, 9090);
	assert_string_equal(cfg.host, "::1");
	assert_int_equal(cfg.listen_addr.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&cfg.listen_addr)->sin6_port), 9090);
	assert_string_equal(cfg.database_url, "sqlite:/tmp/x.db");
	assert_string_equal(cfg.data_dir, "/var/lib/echofs");
	assert_string_equal(cfg.redis_addr, "127.0.0.1:6379");
	assert_int_equal(cfg.redis_timeout_ms, 750);
	assert_int_equal(cfg.replication_factor, 2);
	assert_true(cfg.chunk_size == 4194304);
	assert_int_equal(cfg.log_level, EFS_LOG_DEBUG);
	assert_int_equal(cfg.heartbeat_interval_ms, 500);
	assert_int_equal(cfg.worker_dead_after_ms, 1500);
	assert_int_equal(cfg.repair_after_ms, 0);
}

static void test_master_redis_timeout_bounds(void **state)
{
	env_secrets();
	env_set("REDIS_TIMEOUT_MS", "0");
	master_refused("REDIS_TIMEOUT_MS");
	env_set("REDIS_TIMEOUT_MS", "60001");
	master_refused("REDIS_TIMEOUT_MS");
	env_set("REDIS_TIMEOUT_MS", "fast");
	master_refused("REDIS_TIMEOUT_MS");
}

static void test_master_missing_jwt_secret(void **state)
{
	env_set("CLUSTER_SECRET", "cluster-test-secret");
	master_refused("JWT_SECRET");
	/* empty counts as missing */
	env_set("JWT_SECRET", "");
	master_refused("JWT_SECRET");
}

static void test_master_missing_cluster_secret(void **state)
{
	env_set("JWT_SECRET", "jwt-test-secret");
	master_refused("CLUSTER_SECRET");
	env_set("CLUSTER_SECRET", "");
	master_refused("CLUSTER_SECRET");
}

static void test_master_port(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	env_set("MASTER_PORT", "abc");
	master_refused("MASTER_PORT");
	env_set("MASTER_PORT", "0");
	master_refused("MASTER_PORT");
	env_set("MASTER_PORT", "70000");
	master_refused("MASTER_PORT");
	env_set("MASTER_PORT", "65536");
	master_refused("MASTER_PORT");
	env_set("MASTER_PORT", "-1");
	master_refused("MASTER_PORT");
	env_set("MASTER_PORT", "80 ");
	master_refused("MASTER_PORT");
	env_set("MASTER_PORT", "8K");
	master_refused("MASTER_PORT");

	env_set("MASTER_PORT", "65535");
	master_loads(&cfg);
	assert_int_equal(cfg.port, 65535);
	env_set("MASTER_PORT", "1");
	master_loads(&cfg);
	assert_int_equal(cfg.port, 1);
}

static void test_master_chunk_size(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	env_set("CHUNK_SIZE", "0");
	master_refused("CHUNK_SIZE");
	env_set("CHUNK_SIZE", "1G");
	master_refused("CHUNK_SIZE");
	env_set("CHUNK_SIZE", "67108865");
	master_refused("CHUNK_SIZE");
	env_set("CHUNK_SIZE", "lots");
	master_refused("CHUNK_SIZE");

	env_set("CHUNK_SIZE", "4M");
	master_loads(&cfg);
	assert_true(cfg.chunk_size == 4194304);
	env_set("CHUNK_SIZE", "64MiB");
	master_loads(&cfg);
	assert_true(cfg.chunk_size == EFS_MAX_CHUNK_SIZE);
	env_set("CHUNK_SIZE", "65536");
	master_loads(&cfg);
	assert_true(cfg.chunk_size == 65536);
}

/* A floor under chunk sizes that CHUNK_SIZE itself respects; the session
 * chunk budget holds at least one chunk of the largest size. */
static void test_master_min_chunk_size_and_session_memory(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_true(cfg.min_chunk_size == 65536);
	assert_true(cfg.upload_memory == EFS_MASTER_DEFAULT_UPLOAD_MEMORY);
	env_set("CHUNK_SIZE", "65535");
	master_refused("MIN_CHUNK_SIZE");
	env_set("MIN_CHUNK_SIZE", "1");
	master_loads(&cfg);
	assert_true(cfg.chunk_size == 65535 && cfg.min_chunk_size == 1);
	env_set("MIN_CHUNK_SIZE", "0");
	master_refused("MIN_CHUNK_SIZE");
	env_set("MIN_CHUNK_SIZE", "65M");
	master_refused("MIN_CHUNK_SIZE");
	env_set("MIN_CHUNK_SIZE", "1");

	env_set("UPLOAD_MEMORY", "127M");
	master_refused("UPLOAD_MEMORY");
	env_set("UPLOAD_MEMORY", "1G");
	master_loads(&cfg);
	assert_true(cfg.upload_memory == (uint64_t)1 << 30);
}

static void test_master_chunk_cache_size(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_true(cfg.chunk_cache_size == EFS_MASTER_DEFAULT_CHUNK_CACHE_SIZE);
	env_set("CHUNK_CACHE_SIZE", "0"); /* off */
	master_loads(&cfg);
	assert_true(cfg.chunk_cache_size == 0);
	env_set("CHUNK_CACHE_SIZE", "16M");
	master_loads(&cfg);
	assert_true(cfg.chunk_cache_size == 16777216);
	env_set("CHUNK_CACHE_SIZE", "17G");
	master_refused("CHUNK_CACHE_SIZE");
	env_set("CHUNK_CACHE_SIZE", "some");
	master_refused("CHUNK_CACHE_SIZE");
}

/* The access keys' encryption key (64 hex digits, or unset: derived from
 * JWT_SECRET) and the per-user cap of keys. */
static void test_master_access_keys(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_null(cfg.keys_encryption_key);
	assert_int_equal(cfg.max_access_keys_per_user, EFS_MASTER_DEFAULT_MAX_ACCESS_KEYS);
	env_set("KEYS_ENCRYPTION_KEY",
		"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff");
	env_set("MAX_ACCESS_KEYS_PER_USER", "2");
	master_loads(&cfg);
	assert_non_null(cfg.keys_encryption_key);
	assert_int_equal(cfg.max_access_keys_per_user, 2);
	env_set("KEYS_ENCRYPTION_KEY", "00112233445566778899aabbccddeeff"); /* 16 bytes */
	master_refused("KEYS_ENCRYPTION_KEY");
	env_set("KEYS_ENCRYPTION_KEY",
		"zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
	master_refused("KEYS_ENCRYPTION_KEY");
	unsetenv("KEYS_ENCRYPTION_KEY");
	env_set("MAX_ACCESS_KEYS_PER_USER", "0");
	master_refused("MAX_ACCESS_KEYS_PER_USER");
	env_set("MAX_ACCESS_KEYS_PER_USER", "10001");
	master_refused("MAX_ACCESS_KEYS_PER_USER");
}

static void test_master_history_interval(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_true(cfg.history_interval_ms == EFS_MASTER_DEFAULT_HISTORY_INTERVAL_MS);
	env_set("HISTORY_INTERVAL_MS", "100");
	master_loads(&cfg);
	assert_true(cfg.history_interval_ms == 100);
	env_set("HISTORY_INTERVAL_MS", "99");
	master_refused("HISTORY_INTERVAL_MS");
	env_set("HISTORY_INTERVAL_MS", "3600001");
	master_refused("HISTORY_INTERVAL_MS");
}

static void test_master_s3_multipart_expiry(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_true(cfg.s3_multipart_expiry_ms == 7LL * 86400 * 1000);
	env_set("S3_MULTIPART_EXPIRY", "3");
	master_loads(&cfg);
	assert_true(cfg.s3_multipart_expiry_ms == 3000);
	env_set("S3_MULTIPART_EXPIRY", "0");
	master_refused("S3_MULTIPART_EXPIRY");
	env_set("S3_MULTIPART_EXPIRY", "31536001");
	master_refused("S3_MULTIPART_EXPIRY");
}

static void test_master_replication(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	env_set("REPLICATION_FACTOR", "0");
	master_refused("REPLICATION_FACTOR");
	env_set("REPLICATION_FACTOR", "17");
	master_refused("REPLICATION_FACTOR");
	env_set("REPLICATION_FACTOR", "three");
	master_refused("REPLICATION_FACTOR");
	env_set("REPLICATION_FACTOR", "1");
	master_loads(&cfg);
	assert_int_equal(cfg.replication_factor, 1);
	env_set("REPLICATION_FACTOR", "16");
	master_loads(&cfg);
	assert_int_equal(cfg.replication_factor, EFS_MAX_REPLICATION);
}

/* STORAGE_POLICY (issue 17): the default policy of uploads; a replicas:N
 * is REPLICATION_FACTOR, and both set must agree. */
static void test_master_storage_policy(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_int_equal(cfg.default_policy.kind, EFS_POLICY_REPLICAS);
	assert_int_equal(cfg.default_policy.replicas, 3);
	env_set("STORAGE_POLICY", "ec:4+2");
	master_loads(&cfg);
	assert_int_equal(cfg.default_policy.kind, EFS_POLICY_EC);
	assert_int_equal(cfg.default_policy.data_shards, 4);
	assert_int_equal(cfg.default_policy.parity_shards, 2);
	assert_int_equal(cfg.replication_factor, 3);
	env_set("STORAGE_POLICY", "replicas:2");
	master_loads(&cfg);
	assert_int_equal(cfg.replication_factor, 2);
	env_set("REPLICATION_FACTOR", "3");
	master_refused("STORAGE_POLICY");
	env_set("REPLICATION_FACTOR", "2");
	master_loads(&cfg);
	assert_int_equal(cfg.replication_factor, 2);
	env_set("STORAGE_POLICY", "ec:4+02");
	master_refused("STORAGE_POLICY");
	env_set("STORAGE_POLICY", "raid5");
	master_refused("STORAGE_POLICY");
	env_set("STORAGE_POLICY", "ec:15+2"); /* 17 shards: more than a chunk lists */
	master_refused("STORAGE_POLICY");
}

/* EC_AFTER, EC_POLICY, EC_MIN_SIZE, EC_CONVERT_BANDWIDTH (issue 17):
 * conversion is off by default; a duration with its unit; an ec:K+M only. */
static void test_master_ec_convert(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_int_equal(cfg.ec_after_ms, 0);
	assert_int_equal(cfg.ec_policy.kind, EFS_POLICY_EC);
	assert_int_equal(cfg.ec_policy.data_shards, 4);
	assert_int_equal(cfg.ec_policy.parity_shards, 2);
	assert_int_equal(cfg.ec_min_size, 4 * 1024 * 1024);
	static const struct {
		const char *text;
		int64_t ms;
	} ok[] = {{"0", 0},	   {"90", 90000},	{"90s", 90000},	 {"250ms", 250},
		  {"5m", 300000}, {"2h", 7200000},	{"7d", 604800000}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		env_set("EC_AFTER", ok[i].text);
		master_loads(&cfg);
		assert_int_equal(cfg.ec_after_ms, ok[i].ms);
	}
	static const char *const bad[] = {"7 d", "-1s", "1w", "d", "7D", "99999999d"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env_set("EC_AFTER", bad[i]);
		master_refused("EC_AFTER");
	}
	env_set("EC_AFTER", "7d");
	env_set("EC_POLICY", "ec:6+3");
	env_set("EC_MIN_SIZE", "1M");
	env_set("EC_CONVERT_BANDWIDTH", "8M");
	master_loads(&cfg);
	assert_int_equal(cfg.ec_policy.data_shards, 6);
	assert_int_equal(cfg.ec_policy.parity_shards, 3);
	assert_int_equal(cfg.ec_min_size, 1024 * 1024);
	assert_int_equal(cfg.ec_convert_bandwidth, 8 * 1024 * 1024);
	env_set("EC_POLICY", "replicas:2"); /* conversion goes to EC only */
	master_refused("EC_POLICY");
	env_set("EC_POLICY", "ec:15+2");
	master_refused("EC_POLICY");
}

static void test_master_log_level(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	env_set("LOG_LEVEL", "loud");
	master_refused("LOG_LEVEL");
	env_set("LOG_LEVEL", "warn");
	master_loads(&cfg);
	assert_int_equal(cfg.log_level, EFS_LOG_WARN);
	env_set("LOG_LEVEL", "error");
	master_loads(&cfg);
	assert_int_equal(cfg.log_level, EFS_LOG_ERROR);
}

/* TOPOLOGY_VISIBLE_TO: "users" by default (the pinned contract), or
 * "operators"; anything else refused, on the master and the worker. */
static void test_topology_visible_to(void **state)
{
	struct efs_master_config cfg;
	struct efs_worker_config wcfg;

	env_secrets();
	master_loads(&cfg);
	assert_int_equal(cfg.topology, EFS_TOPOLOGY_USERS);
	worker_loads(&wcfg);
	assert_int_equal(wcfg.topology, EFS_TOPOLOGY_USERS);
	env_set("TOPOLOGY_VISIBLE_TO", "operators");
	master_loads(&cfg);
	assert_int_equal(cfg.topology, EFS_TOPOLOGY_OPERATORS);
	worker_loads(&wcfg);
	assert_int_equal(wcfg.topology, EFS_TOPOLOGY_OPERATORS);
	env_set("TOPOLOGY_VISIBLE_TO", "users");
	master_loads(&cfg);
	assert_int_equal(cfg.topology, EFS_TOPOLOGY_USERS);
	env_set("TOPOLOGY_VISIBLE_TO", "admins");
	master_refused("TOPOLOGY_VISIBLE_TO");
	worker_refused("TOPOLOGY_VISIBLE_TO");
	env_set("TOPOLOGY_VISIBLE_TO", "Operators");
	master_refused("TOPOLOGY_VISIBLE_TO");
}

static void test_master_dead_after_heartbeat(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	/* equal to the default heartbeat (2000) */
	env_set("WORKER_DEAD_AFTER_MS", "2000");
	master_refused("WORKER_DEAD_AFTER_MS");
	/* smaller */
	env_set("WORKER_DEAD_AFTER_MS", "1000");
	master_refused("WORKER_DEAD_AFTER_MS");
	/* smaller than an explicit heartbeat */
	env_set("HEARTBEAT_INTERVAL_MS", "30000");
	env_set("WORKER_DEAD_AFTER_MS", "29999");
	master_refused("HEARTBEAT_INTERVAL_MS");
	/* the default dead-after (10000) below an explicit heartbeat */
	unsetenv("WORKER_DEAD_AFTER_MS");
	master_refused("WORKER_DEAD_AFTER_MS");

	env_set("WORKER_DEAD_AFTER_MS", "30001");
	master_loads(&cfg);
	assert_int_equal(cfg.heartbeat_interval_ms, 30000);
	assert_int_equal(cfg.worker_dead_after_ms, 30001);
}

static void test_master_host(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	env_set("MASTER_HOST", "not-an-ip");
	master_refused("MASTER_HOST");
	env_set("MASTER_HOST", "127.0.0.1");
	env_set("MASTER_PORT", "8123");
	master_loads(&cfg);
	assert_int_equal(cfg.listen_addr.ss_family, AF_INET);
	assert_int_equal(((struct sockaddr_in *)&cfg.listen_addr)->sin_addr.s_addr,
			 htonl(INADDR_LOOPBACK));
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.listen_addr)->sin_port), 8123);
}

/* ---- the worker ---------------------------------------------------------- */

static void test_worker_defaults(void **state)
{
	struct efs_worker_config cfg;

	env_set("CLUSTER_SECRET", "cluster-test-secret");
	worker_loads(&cfg);
	assert_int_equal(cfg.port, 8081);
	assert_string_equal(cfg.host, "0.0.0.0");
	assert_int_equal(cfg.listen_addr.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.listen_addr)->sin_port), 8081);
	assert_string_equal(cfg.data_dir, "./data/worker");
	assert_string_equal(cfg.advertise_url, "http://127.0.0.1:8081");
	assert_int_equal(cfg.master_count, 1);
	assert_string_equal(cfg.master_urls[0], "http://127.0.0.1:8080");
	assert_string_equal(cfg.cluster_secret, "cluster-test-secret");
	assert_true(cfg.capacity_bytes == 0);
	assert_int_equal(cfg.scrub_interval_ms, EFS_WORKER_DEFAULT_SCRUB_MS);
	assert_int_equal(cfg.log_level, EFS_LOG_INFO);
}

static void test_worker_missing_cluster_secret(void **state)
{
	worker_refused("CLUSTER_SECRET");
}

static void test_worker_advertise_url(void **state)
{
	struct efs_worker_config cfg;

	env_set("CLUSTER_SECRET", "cluster-test-secret");
	/* derived from WORKER_PORT */
	env_set("WORKER_PORT", "9001");
	worker_loads(&cfg);
	assert_int_equal(cfg.port, 9001);
	assert_string_equal(cfg.advertise_url, "http://127.0.0.1:9001");

	/* given explicitly, without its trailing slashes */
	env_set("WORKER_ADVERTISE_URL", "http://10.0.0.7:8081//");
	worker_loads(&cfg);
	assert_string_equal(cfg.advertise_url, "http://10.0.0.7:8081");

	env_set("WORKER_ADVERTISE_URL", "10.0.0.7:8081");
	worker_refused("WORKER_ADVERTISE_URL");
	env_set("WORKER_ADVERTISE_URL", "http://");
	worker_refused("WORKER_ADVERTISE_URL");
}

static void test_worker_advertise_url_too_long(void **state)
{
	char url[EFS_URL_MAX + 100];

	env_set("CLUSTER_SECRET", "cluster-test-secret");
	memset(url, 'a', sizeof(url));
	memcpy(url, "http://", 7);
	url[sizeof(url) - 1] = '\0';
	env_set("WORKER_ADVERTISE_URL", url);
	worker_refused("WORKER_ADVERTISE_URL");
	/* the same with a trailing slash to strip */
	url[sizeof(url) - 2] = '/';
	env_set("WORKER_ADVERTISE_URL", url);
	worker_refused("WORKER_ADVERTISE_URL");
}

static void test_worker_master_urls(void **state)
{
	struct efs_worker_config cfg;

	env_set("CLUSTER_SECRET", "cluster-test-secret");
	env_set("MASTER_URL", "http://a:1, http://b:2/");
	worker_loads(&cfg);
	assert_int_equal(cfg.master_count, 2);
	assert_string_equal(cfg.master_urls[0], "http://a:1");
	assert_string_equal(cfg.master_urls[1], "http://b:2");

	env_set("MASTER_URL", "https://m1.example:8443/,,http://m2:8080 ,http://m3:8080");
	worker_loads(&cfg);
	assert_int_equal(cfg.master_count, 3);
	assert_string_equal(cfg.master_urls[0], "https://m1.example:8443");
	assert_string_equal(cfg.master_urls[1], "http://m2:8080");
	assert_string_equal(cfg.master_urls[2], "http://m3:8080");

	env_set("MASTER_URL", "http://only:8080");
	worker_loads(&cfg);
	assert_int_equal(cfg.master_count, 1);
	assert_string_equal(cfg.master_urls[0], "http://only:8080");
}

static void test_worker_master_url_refused(void **state)
{
	char list[EFS_MAX_MASTERS * 16 + 16];
	size_t off = 0;

	env_set("CLUSTER_SECRET", "cluster-test-secret");
	env_set("MASTER_URL", "ftp://a:1");
	worker_refused("MASTER_URL");
	env_set("MASTER_URL", "a:1");
	worker_refused("MASTER_URL");
	env_set("MASTER_URL", "http://a:1,ftp://b:2");
	worker_refused("MASTER_URL");
	env_set("MASTER_URL", " , ,");
	worker_refused("MASTER_URL");

	/* more than EFS_MAX_MASTERS */
	for (int i = 0; i <= EFS_MAX_MASTERS; i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%shttp://m%d:1",
					i ? "," : "", i);
	assert_true(off < sizeof(list));
	env_set("MASTER_URL", list);
	worker_refused("MASTER_URL");
}

static void test_worker_capacity(void **state)
{
	struct efs_worker_config cfg;

	env_set("CLUSTER_SECRET", "cluster-test-secret");
	env_set("WORKER_CAPACITY_BYTES", "10G");
	worker_loads(&cfg);
	assert_true(cfg.capacity_bytes == 10737418240ULL);
	env_set("WORKER_CAPACITY_BYTES", "1048576");
	worker_loads(&cfg);
	assert_true(cfg.capacity_bytes == 1048576);
	env_set("WORKER_CAPACITY_BYTES", "ten gigs");
	worker_refused("WORKER_CAPACITY_BYTES");
}

static void test_worker_scrub_interval(void **state)
{
	struct efs_worker_config cfg;

	env_set("CLUSTER_SECRET", "cluster-test-secret");
	env_set("SCRUB_INTERVAL_MS", "abc");
	worker_refused("SCRUB_INTERVAL_MS");
	env_set("SCRUB_INTERVAL_MS", "99");
	worker_refused("SCRUB_INTERVAL_MS");
	env_set("SCRUB_INTERVAL_MS", "60000");
	worker_loads(&cfg);
	assert_int_equal(cfg.scrub_interval_ms, 60000);
}

static void test_worker_port_and_host(void **state)
{
	env_set("CLUSTER_SECRET", "cluster-test-secret");
	env_set("WORKER_PORT", "0");
	worker_refused("WORKER_PORT");
	env_set("WORKER_PORT", "http");
	worker_refused("WORKER_PORT");
	unsetenv("WORKER_PORT");
	env_set("WORKER_HOST", "worker.local");
	worker_refused("WORKER_HOST");
	unsetenv("WORKER_HOST");
	env_set("LOG_LEVEL", "verbose");
	worker_refused("LOG_LEVEL");
}

/* ---- TLS ------------------------------------------------------------------- */

/* The TLS files: unset means plain HTTP and the system's CAs; a file must
 * be readable and regular; a certificate needs its key and a key its
 * certificate. (Whether they are a valid pair: test_http_tls.c.) */
static void test_tls_files(void **state)
{
	char path[] = "/tmp/efs-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct efs_master_config mcfg;
	struct efs_worker_config wcfg;

	env_secrets();
	master_loads(&mcfg);
	assert_null(mcfg.tls.cert_file);
	assert_null(mcfg.tls.key_file);
	assert_null(mcfg.tls.ca_file);

	env_set("TLS_CA_FILE", path);
	master_loads(&mcfg);
	assert_string_equal(mcfg.tls.ca_file, path);
	worker_loads(&wcfg);
	assert_string_equal(wcfg.tls.ca_file, path);
	assert_string_equal(wcfg.advertise_url, "http://127.0.0.1:8081");

	env_set("TLS_CA_FILE", "/nonexistent/ca.pem");
	master_refused("TLS_CA_FILE");
	worker_refused("TLS_CA_FILE");
	env_set("TLS_CA_FILE", "/tmp");
	master_refused("TLS_CA_FILE");
	unsetenv("TLS_CA_FILE");

	env_set("TLS_CERT_FILE", path);
	master_refused("TLS_KEY_FILE");
	worker_refused("TLS_KEY_FILE");
	unsetenv("TLS_CERT_FILE");
	env_set("TLS_KEY_FILE", path);
	master_refused("TLS_CERT_FILE");
	/* Both set, but the file is empty: no certificate in it. */
	env_set("TLS_CERT_FILE", path);
	master_refused("TLS_CERT_FILE");
	worker_refused("TLS_CERT_FILE");
	unlink(path);
}

/* HEADER_TIMEOUT_MS: both daemons, 10 s by default, 100 ms to 10 min. */
static void test_header_timeout(void **state)
{
	struct efs_master_config mcfg;
	struct efs_worker_config wcfg;

	env_secrets();
	master_loads(&mcfg);
	worker_loads(&wcfg);
	assert_int_equal(mcfg.header_timeout_ms, EFS_HTTP_DEFAULT_HEADER_TIMEOUT_MS);
	assert_int_equal(wcfg.header_timeout_ms, EFS_HTTP_DEFAULT_HEADER_TIMEOUT_MS);
	env_set("HEADER_TIMEOUT_MS", "2500");
	master_loads(&mcfg);
	worker_loads(&wcfg);
	assert_int_equal(mcfg.header_timeout_ms, 2500);
	assert_int_equal(wcfg.header_timeout_ms, 2500);
	for (size_t i = 0; i < 3; i++) {
		env_set("HEADER_TIMEOUT_MS", (const char *[]){"99", "600001", "x"}[i]);
		master_refused("HEADER_TIMEOUT_MS");
		worker_refused("HEADER_TIMEOUT_MS");
	}
}

/* SHUTDOWN_GRACE_MS: both daemons, 30 s by default, 0 (no wait) to 1 h. */
static void test_shutdown_grace(void **state)
{
	struct efs_master_config mcfg;
	struct efs_worker_config wcfg;

	env_secrets();
	master_loads(&mcfg);
	worker_loads(&wcfg);
	assert_int_equal(mcfg.shutdown_grace_ms, 30000);
	assert_int_equal(wcfg.shutdown_grace_ms, 30000);
	for (size_t i = 0; i < 2; i++) {
		const char *ok = (const char *[]){"0", "3600000"}[i];
		env_set("SHUTDOWN_GRACE_MS", ok);
		master_loads(&mcfg);
		worker_loads(&wcfg);
		assert_int_equal(mcfg.shutdown_grace_ms, i ? 3600000 : 0);
		assert_int_equal(wcfg.shutdown_grace_ms, i ? 3600000 : 0);
	}
	for (size_t i = 0; i < 3; i++) {
		env_set("SHUTDOWN_GRACE_MS", (const char *[]){"-1", "3600001", "30s"}[i]);
		master_refused("SHUTDOWN_GRACE_MS");
		worker_refused("SHUTDOWN_GRACE_MS");
	}
}

/* MASTER_HTTP_THREADS: 0 (a thread per connection) by default, up to
 * EFS_HTTP_MAX_EVENT_THREADS. */
static void test_master_http_threads(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_int_equal(cfg.http_threads, 0);
	for (size_t i = 0; i < 2; i++) {
		env_set("MASTER_HTTP_THREADS", (const char *[]){"2", "256"}[i]);
		master_loads(&cfg);
		assert_int_equal(cfg.http_threads, i ? 256 : 2);
	}
	for (size_t i = 0; i < 3; i++) {
		env_set("MASTER_HTTP_THREADS", (const char *[]){"-1", "257", "two"}[i]);
		master_refused("MASTER_HTTP_THREADS");
	}
}

/* UPLOAD_MEMORY_PER_USER: a quarter of UPLOAD_MEMORY, but at least one
 * chunk of the largest size, and at most UPLOAD_MEMORY. */
static void test_master_upload_memory_per_user(void **state)
{
	struct efs_master_config cfg;

	env_secrets();
	master_loads(&cfg);
	assert_true(cfg.upload_memory_per_user == EFS_MIN_UPLOAD_MEMORY);
	env_set("UPLOAD_MEMORY", "1G");
	master_loads(&cfg);
	assert_true(cfg.upload_memory_per_user == (uint64_t)256 << 20);
	env_set("UPLOAD_MEMORY", "128M");
	master_loads(&cfg);
	assert_true(cfg.upload_memory_per_user == (uint64_t)128 << 20);
	env_set("UPLOAD_MEMORY", "1G");
	env_set("UPLOAD_MEMORY_PER_USER", "512M");
	master_loads(&cfg);
	assert_true(cfg.upload_memory_per_user == (uint64_t)512 << 20);
	env_set("UPLOAD_MEMORY_PER_USER", "127M");
	master_refused("UPLOAD_MEMORY_PER_USER");
	env_set("UPLOAD_MEMORY_PER_USER", "2G");
	master_refused("UPLOAD_MEMORY_PER_USER");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, env_clear, env_clear)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_env_string),
		T(test_env_u64),
		T(test_env_listen_host),
		T(test_http_url_valid),
		T(test_master_defaults),
		T(test_master_overrides),
		T(test_master_redis_timeout_bounds),
	    T(test_master_redis_timeout_bounds),
	    T(test_master_missing_jwt_secret),
		T(test_master_missing_cluster_secret),
		T(test_master_port),
		T(test_master_chunk_size),
		T(test_master_min_chunk_size_and_session_memory),
		T(test_master_chunk_cache_size),
		T(test_master_access_keys),
		T(test_master_history_interval),
		T(test_master_s3_multipart_expiry),
		T(test_master_replication),
		T(test_master_storage_policy),
		T(test_master_ec_convert),
		T(test_master_log_level),
		T(test_topology_visible_to),
		T(test_master_dead_after_heartbeat),
		T(test_master_host),
		T(test_worker_defaults),
		T(test_worker_missing_cluster_secret),
		T(test_worker_advertise_url),
		T(test_worker_advertise_url_too_long),
		T(test_worker_master_urls),
		T(test_worker_master_url_refused),
		T(test_worker_capacity),
		T(test_worker_scrub_interval),
		T(test_worker_port_and_host),
		T(test_tls_files),
		T(test_header_timeout),
		T(test_shutdown_grace),
		T(test_master_http_threads),
		T(test_master_upload_memory_per_user),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
