/* SPDX-License-Identifier: MIT */
/* test_http_tls.c - unit tests of HTTPS between http_server.h and
 * http_client.h.
 *
 * A throwaway CA and a server certificate for 127.0.0.1 come from the
 * openssl CLI. A server started with them answers only HTTPS; a client
 * given the CA file (efs_http_client_set_ca_file) verifies it and keeps its
 * TLS connections alive across calls, single and parallel, as it does plain
 * ones; a client without that CA, or with another, gets -EPERM and a
 * message saying why; a plain http:// request gets no answer; and
 * efs_http_tls_check refuses a key that is not the certificate's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "echofs/http_client.h"
#include "echofs/http_server.h"
#include "echofs/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/efs-tls-unit-XXXXXX";
static char ca[256], cert[256], key[256], other_ca[256], other_key[256];

/* Makes a CA (@prefix-ca.pem) and a certificate for 127.0.0.1 it signed
 * (@prefix-server.pem, @prefix-server.key) in dir. */
static int make_certs(const char *prefix)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && "
		 "openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj '/CN=%s CA' "
		 "-keyout %s-ca.key -out %s-ca.pem >/dev/null 2>&1 && "
		 "openssl req -newkey rsa:2048 -nodes -sha256 -subj '/CN=%s server' "
		 "-keyout %s-server.key -out %s-server.csr >/dev/null 2>&1 && "
		 "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > %s.ext && "
		 "openssl x509 -req -in %s-server.csr -CA %s-ca.pem -CAkey %s-ca.key "
		 "-CAcreateserial -days 2 -sha256 -extfile %s.ext -out %s-server.pem "
		 ">/dev/null 2>&1",
		 dir, prefix, prefix, prefix, prefix, prefix, prefix, prefix, prefix, prefix, prefix,
		 prefix, prefix);
	return system(cmd) == 0 ? 0 : -1;
}

static int hello(struct efs_http_req *req)
{
	return efs_http_reply_bytes(req, 200, "text/plain", "hello", 5);
}

static const struct efs_http_route routes[] = {
	{"GET", "/hello", EFS_AUTH_NONE, .handle = hello},
};

static struct efs_http_server *server;
static char https_url[64], http_url[64];

static int setup(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char err[256] = "";
	struct efs_http_server_config cfg = {
		.addr = &sa,
		.addrlen = sizeof(sa),
		.routes = routes,
		.route_count = EFS_ARRAY_SIZE(routes),
		.tls_cert_file = cert,
		.tls_key_file = key,
		.error = err,
		.error_len = sizeof(err),
	};
	if (efs_http_server_start(&cfg, &server) < 0) {
		fprintf(stderr, "cannot start the TLS server: %s\n", err);
		return -1;
	}
	uint16_t port = efs_http_server_port(server);
	snprintf(https_url, sizeof(https_url), "https://127.0.0.1:%u/hello", port);
	snprintf(http_url, sizeof(http_url), "http://127.0.0.1:%u/hello", port);
	return 0;
}

static int teardown(void **state)
{
	efs_http_server_stop(server, 1000);
	return 0;
}

static struct efs_http_client *client_with(const char *ca_file)
{
	struct efs_http_client *c = NULL;
	assert_int_equal(efs_http_client_new(&c), 0);
	assert_int_equal(efs_http_client_set_ca_file(c, ca_file), 0);
	return c;
}

/* Twenty single calls and ten rounds of three parallel ones open no more
 * connections than the most ever in flight at once: TLS connections are
 * kept alive and reused. */
static void test_verified_calls_reuse_their_connections(void **state)
{
	struct efs_http_client *c = client_with(ca);
	for (int i = 0; i < 20; i++) {
		struct efs_http_call call;
		efs_http_call_init(&call, "GET", https_url);
		assert_int_equal(efs_http_call_run(c, &call), 0);
		assert_int_equal(call.status, 200);
		assert_int_equal(call.resp.len, 5);
		assert_memory_equal(call.resp.data, "hello", 5);
		efs_http_call_release(&call);
	}
	assert_int_equal(efs_http_client_connections_opened(c), 1);
	for (int round = 0; round < 10; round++) {
		struct efs_http_call calls[3], *callp[3];
		for (int i = 0; i < 3; i++) {
			efs_http_call_init(&calls[i], "GET", https_url);
			callp[i] = &calls[i];
		}
		assert_int_equal(efs_http_call_run_parallel(c, callp, 3), 0);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(calls[i].error, 0);
			assert_int_equal(calls[i].status, 200);
			efs_http_call_release(&calls[i]);
		}
	}
	assert_true(efs_http_client_connections_opened(c) <= 3);
	efs_http_client_free(c);
}

/* Without the CA (the system's store), or with another CA: -EPERM, and
 * the message says it is the certificate. */
static void test_unverified_server_is_refused(void **state)
{
	const char *cas[] = {NULL, other_ca};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(cas); i++) {
		struct efs_http_client *c = client_with(cas[i]);
		struct efs_http_call call;
		efs_http_call_init(&call, "GET", https_url);
		assert_int_equal(efs_http_call_run(c, &call), -EPERM);
		assert_int_equal(call.status, 0);
		assert_non_null(strstr(call.errmsg, "certificate"));
		efs_http_call_release(&call);
		efs_http_client_free(c);
	}
}

/* A CA file that does not exist is an error, never a fallback. */
static void test_missing_ca_file_is_an_error(void **state)
{
	char missing[300];
	snprintf(missing, sizeof(missing), "%s/nope.pem", dir);
	struct efs_http_client *c = client_with(missing);
	struct efs_http_call call;
	efs_http_call_init(&call, "GET", https_url);
	assert_int_equal(efs_http_call_run(c, &call), -EPERM);
	assert_int_equal(call.status, 0);
	efs_http_call_release(&call);
	efs_http_client_free(c);
}

/* Plain HTTP to the HTTPS server gets no HTTP answer. */
static void test_plain_http_gets_no_answer(void **state)
{
	struct efs_http_client *c = client_with(ca);
	struct efs_http_call call;
	efs_http_call_init(&call, "GET", http_url);
	call.timeout_ms = 5000;
	assert_true(efs_http_call_run(c, &call) < 0);
	assert_int_equal(call.status, 0);
	efs_http_call_release(&call);
	efs_http_client_free(c);
}

static void test_tls_check(void **state)
{
	char err[256] = "";
	assert_int_equal(efs_http_tls_check(cert, key, err, sizeof(err)), 0);
	assert_int_equal(efs_http_tls_check(cert, other_key, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "TLS_KEY_FILE"));
	assert_int_equal(efs_http_tls_check(key, key, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "TLS_CERT_FILE"));
	assert_int_equal(efs_http_tls_check(cert, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "TLS_KEY_FILE"));
}

int main(void)
{
	efs_log_set_level(EFS_LOG_ERROR);
	if (!mkdtemp(dir) || make_certs("a") < 0 || make_certs("b") < 0) {
		fprintf(stderr, "test_http_tls: cannot make certificates with openssl in %s\n", dir);
		return 1;
	}
	snprintf(ca, sizeof(ca), "%s/a-ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/a-server.pem", dir);
	snprintf(key, sizeof(key), "%s/a-server.key", dir);
	snprintf(other_ca, sizeof(other_ca), "%s/b-ca.pem", dir);
	snprintf(other_key, sizeof(other_key), "%s/b-server.key", dir);
	if (efs_http_client_global_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_check),
		cmocka_unit_test(test_verified_calls_reuse_their_connections),
		cmocka_unit_test(test_unverified_server_is_refused),
		cmocka_unit_test(test_missing_ca_file_is_an_error),
		cmocka_unit_test(test_plain_http_gets_no_answer),
	};
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	efs_http_client_global_cleanup();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_http_tls: could not remove %s\n", dir);
	return failed;
}
