# EchoFS - plain Makefile with pkg-config.
#
#   make                      developer build, warnings are errors
#   make test                 install missing packages, build, run every test
#   make SANITIZE=address,undefined test
#                             the same under ASan/UBSan (separate build tree)
#   make run                  start a local cluster (master + 3 workers)
#   make bench [QUICK=1]      benchmarks (never part of `make test`), bench/run.sh
#   make bench-grpc           1000 simulated workers, gRPC streams vs HTTP polling
#   make bench-million [N=..]  costs at a million files (minutes), bench/million.sh
#   make fuzz                 libFuzzer harnesses (clang): bin/fuzz_<name>
#   make fuzz-smoke           every harness for FUZZ_SECONDS (15) each, for CI

CC      := gcc
PKGS    := libmicrohttpd libcurl jansson sqlite3 libjwt libcrypto libisal libpq hiredis expat \
           grpc libprotobuf-c
# libsystemd is optional: with it the daemons tell systemd when they are
# ready (Type=notify, src/common/daemon.c); `make SYSTEMD=0` builds without
# it, and `make install` then writes Type=simple into the units.
ifndef SYSTEMD
  SYSTEMD := $(shell pkg-config --exists libsystemd 2>/dev/null && echo 1 || echo 0)
endif
ifeq ($(SYSTEMD),1)
  PKGS  += libsystemd
  SYSTEMD_DEFS := -DEFS_HAVE_LIBSYSTEMD
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wvla -Wno-unused-parameter -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c17 -D_GNU_SOURCE -pthread $(WARN) -Iinclude -Isrc -I$(BUILD)/gen $(PKG_CFLAGS) \
           $(SYSTEMD_DEFS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -pthread -lm

ifdef SANITIZE
  BUILD   := build/san
  CFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=$(SANITIZE)
else
  BUILD   := build/dev
endif
BIN := $(if $(SANITIZE),$(BUILD)/bin,bin)

LIB_SRC    := $(wildcard src/common/*.c src/meta/*.c) \
              $(filter-out %/main.c,$(wildcard src/master/*.c src/worker/*.c src/cli/*.c))
# Sources made at build time: the dashboard page as a C array, and the
# control plane's messages (proto/echofs.proto) by protoc-c.
GEN_SRC    := $(BUILD)/gen/dashboard_html.c $(BUILD)/gen/echofs.pb-c.c
GEN_HDR    := $(BUILD)/gen/echofs.pb-c.h
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o) $(GEN_SRC:.c=.o)
LIB        := $(BUILD)/libechofs.a

PROGS      := $(BIN)/echofs-master $(BIN)/echofs-worker $(BIN)/echofs
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Test drivers the black-box tests run (tests/tools/*.c), built with `all`
# (and with the sanitizers under SANITIZE): e.g. s3_probe for
# tests/integration/test_s3_client.py.
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/%)
# LD_PRELOAD shims the black-box tests load into a daemon (tests/preload/*.c):
# e.g. sync_gate.so for tests/integration/test_worker_threads.py. Plain
# shared objects, never sanitized.
PRELOAD_SRC := $(wildcard tests/preload/*.c)
PRELOAD_SO  := $(PRELOAD_SRC:tests/preload/%.c=$(BUILD)/tests/%.so)

.PHONY: all deps test unit integration integration-parallel integration-serial integration-tls \
	integration-aws run bench bench-grpc bench-million clean format fuzz fuzz-smoke install uninstall
all: $(PROGS) $(TOOL_BIN) $(PRELOAD_SO)

$(BUILD)/%.o: %.c | $(GEN_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/gen/dashboard_html.c: src/master/dashboard.html scripts/embed.sh
	@mkdir -p $(dir $@)
	./scripts/embed.sh efs_dashboard_html $< > $@.tmp && mv $@.tmp $@

# The messages only: the C side routes calls by their method paths
# (src/common/rpc.c), and protoc-c's service stubs (for protobuf-c-rpc)
# would not compile here (a method named Register becomes a C keyword).
# scripts/proto-messages.sh drops the service block from a copy.
$(BUILD)/gen/echofs.pb-c.c $(BUILD)/gen/echofs.pb-c.h &: proto/echofs.proto scripts/proto-messages.sh
	@mkdir -p $(dir $@)
	./scripts/proto-messages.sh $< $(BUILD)/gen

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/echofs-master: $(BUILD)/src/master/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/echofs-worker: $(BUILD)/src/worker/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/echofs: $(BUILD)/src/cli/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/tests/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tests/%.so: tests/preload/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=c17 $(WARN) -fPIC -shared -o $@ $< -ldl

deps:
	@./scripts/install-deps.sh

# How many test programs run at a time (unit, integration, integration-tls,
# integration-aws).
# Default 1: one at a time, in order. TEST_JOBS=N (N > 1; test/all.sh sets
# 3): the unit programs run N at a time, and the black-box tests in two
# parts: integration-parallel runs every test not marked serial on N
# pytest-xdist workers (a whole test file per worker at a time), then
# integration-serial runs the tests marked serial (tests/integration/
# conftest.py: SERIAL) alone, with nothing else of this build running.
# Both parts always run; the target fails if either did.
TEST_JOBS ?= 1
PARALLEL   := $(filter-out 0 1,$(TEST_JOBS))
PYTEST     := /usr/bin/python3 -m pytest -q
# A black-box test (its fixtures included) or a unit program that runs
# longer than TEST_TIMEOUT seconds fails, named, with its threads' stacks
# (pytest-timeout; coreutils' timeout for the unit programs), instead of
# holding the whole run until CI's own limit (90 min) ends it with no word
# of which. The longest test takes about a minute. 0: no limit.
TEST_TIMEOUT ?= 600
PYTEST_ENV  = ECHOFS_BIN_DIR=$(abspath $(BIN)) ECHOFS_SANITIZE=$(SANITIZE) \
	      PYTEST_TIMEOUT=$(TEST_TIMEOUT)
UNIT_RUN    = timeout -k 10 $(TEST_TIMEOUT)

# `make test` = install what is missing, build, unit tests, black-box tests.
ifeq ($(PARALLEL),)
test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@$(MAKE) --no-print-directory unit integration
else
# The unit programs beside the parallel part (make -j2 test), the serial
# part after both.
test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@rc=0; $(MAKE) --no-print-directory -k unit integration-parallel || rc=1; \
	$(MAKE) --no-print-directory integration-serial || rc=1; exit $$rc
endif

# Every test binary runs; the target fails at the end if any failed. In
# parallel, the slowest (the metadata stores') start first; each one's
# output is printed whole, in the usual order, once all have ended. (On
# PostgreSQL each program makes databases named by its pid.)
unit: $(UNIT_BIN)
ifeq ($(PARALLEL),)
	@failed=""; for t in $(UNIT_BIN); do echo "== $$t"; $(UNIT_RUN) $$t || failed="$$failed $$t"; done; \
	if [ -n "$$failed" ]; then echo "unit tests failed:$$failed"; exit 1; fi
else
	@logs=$$(mktemp -d); \
	printf '%s\n' $(filter %/test_meta_files %/test_meta_sqlite,$(UNIT_BIN)) \
	  $(filter-out %/test_meta_files %/test_meta_sqlite,$(UNIT_BIN)) | \
	  xargs -P $(TEST_JOBS) -I{} sh -c 'n=$$(basename "$$1"); $(UNIT_RUN) "$$1" >"$$2/$$n.log" 2>&1 || \
	    touch "$$2/$$n.failed"' sh {} $$logs; \
	failed=""; for t in $(UNIT_BIN); do n=$$(basename $$t); echo "== $$t"; cat $$logs/$$n.log; \
	  [ ! -e $$logs/$$n.failed ] || failed="$$failed $$t"; done; rm -rf $$logs; \
	if [ -n "$$failed" ]; then echo "unit tests failed:$$failed"; exit 1; fi
endif

ifeq ($(PARALLEL),)
integration: $(PROGS)
	$(PYTEST_ENV) $(PYTEST) tests/integration $(PYTEST_ARGS)
else
integration: $(PROGS)
	@rc=0; $(MAKE) --no-print-directory integration-parallel || rc=1; \
	$(MAKE) --no-print-directory integration-serial || rc=1; exit $$rc
endif

integration-parallel: $(PROGS)
	$(PYTEST_ENV) $(PYTEST) -n $(or $(PARALLEL),2) --dist loadfile -m "not serial" \
	  tests/integration $(PYTEST_ARGS)

integration-serial: $(PROGS)
	@echo "== the serial black-box tests (tests/integration/conftest.py SERIAL), alone"
	$(PYTEST_ENV) $(PYTEST) -m serial tests/integration $(PYTEST_ARGS)

# The core of the black-box suite again over HTTPS: every master and worker
# serves TLS with a throwaway CA's certificate and verifies the others
# (ECHOFS_TEST_TLS=1; see tests/integration/test_tls.py). In parallel, its
# serial tests (none today: pytest exits 5 when nothing is selected) after.
TLS_CORE = tests/integration/test_tls.py tests/integration/test_files.py \
	   tests/integration/test_sessions.py tests/integration/test_registry.py \
	   tests/integration/test_cli.py
integration-tls: $(PROGS)
ifeq ($(PARALLEL),)
	ECHOFS_TEST_TLS=1 $(PYTEST_ENV) $(PYTEST) $(TLS_CORE) $(PYTEST_ARGS)
else
	@rc=0; ECHOFS_TEST_TLS=1 $(PYTEST_ENV) $(PYTEST) -n $(PARALLEL) --dist loadfile \
	  -m "not serial" $(TLS_CORE) $(PYTEST_ARGS) || rc=1; \
	ECHOFS_TEST_TLS=1 $(PYTEST_ENV) $(PYTEST) -m serial $(TLS_CORE) $(PYTEST_ARGS) || \
	  [ $$? -eq 5 ] || rc=1; exit $$rc
endif

# The core of the black-box suite again in full AWS mode: every master keeps
# its chunks in S3 and its metadata in DynamoDB, on local servers started
# for the session (or ECHOFS_TEST_AWS_ENV's, scripts/aws_local.sh), a fresh
# bucket and tables per cluster; tests that need workers skip, saying so;
# plus S3 and DynamoDB throttling (test_aws_faults.py), and the S3 API with
# its buckets, objects, multipart uploads and access keys in DynamoDB
# (test_s3_api.py, test_s3_conditional.py, test_keys.py: ~75 s;
# test_s3_multipart.py: ~80 s, 45 of it a 200 MiB aws s3 cp;
# test_s3_multipart_rechunk.py: ~15 s). See docs/AWS.md.
AWS_CORE = tests/integration/test_aws_faults.py tests/integration/test_files.py \
	   tests/integration/test_sessions.py tests/integration/test_download.py \
	   tests/integration/test_auth.py tests/integration/test_wire_limits.py \
	   tests/integration/test_s3_api.py tests/integration/test_s3_conditional.py \
	   tests/integration/test_s3_copy.py tests/integration/test_s3_multipart.py \
	   tests/integration/test_s3_multipart_rechunk.py tests/integration/test_keys.py
#
# In parallel (TEST_JOBS=N) its files run on N pytest-xdist workers, then
# its serial tests (none today: pytest exits 5 when nothing is selected).
# Every cluster has a bucket and tables of its own and test_aws_faults.py's
# throttling proxy sits in front of its own cluster's master only, so the
# files share the local servers safely. Give ECHOFS_TEST_AWS_ENV (as
# test/all.sh does): without it each xdist worker starts servers of its own.
AWS_ENV     = ECHOFS_TEST_BACKEND=aws $(PYTEST_ENV)
integration-aws: $(PROGS)
ifeq ($(PARALLEL),)
	$(AWS_ENV) $(PYTEST) $(AWS_CORE) $(PYTEST_ARGS)
else
	@rc=0; $(AWS_ENV) $(PYTEST) -n $(PARALLEL) --dist loadfile -m "not serial" \
	  $(AWS_CORE) $(PYTEST_ARGS) || rc=1; \
	$(AWS_ENV) $(PYTEST) -m serial $(AWS_CORE) $(PYTEST_ARGS) || [ $$? -eq 5 ] || rc=1; \
	exit $$rc
endif

run: deps all
	@./scripts/dev-cluster.sh

# QUICK=1: small files and short phases (under 2 minutes). See bench/run.sh.
bench: deps all
	@$(MAKE) --no-print-directory -C bench
	@QUICK=$(QUICK) ./bench/run.sh

# The gRPC control plane against HTTP polling: BENCH_GRPC_WORKERS (1000)
# simulated workers beating every BENCH_GRPC_INTERVAL_MS (1000) on one
# master each way (bench/grpc_sim.py; figures in docs/PERFORMANCE.md).
# About 3 minutes; not part of `make bench`.
BENCH_GRPC_WORKERS ?= 1000
BENCH_GRPC_INTERVAL_MS ?= 1000
$(BUILD)/bench/grpc_sim_client: bench/grpc_sim_client.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench-grpc: deps all $(BUILD)/bench/grpc_sim_client
	@/usr/bin/python3 bench/grpc_sim.py --workers $(BENCH_GRPC_WORKERS) \
	  --interval-ms $(BENCH_GRPC_INTERVAL_MS) --bin-dir $(abspath $(BIN)) \
	  --client $(abspath $(BUILD)/bench/grpc_sim_client) \
	  --json bench/results/grpc-sim-$$(date -u +%Y-%m-%dT%H%M).json

# Costs at a million files (not part of `make bench`: the fill alone takes
# minutes). N=..., BACKENDS="sqlite postgres", SECONDS=... See bench/million.sh.
bench-million: all
	@$(MAKE) --no-print-directory -C bench million
	@N=$(N) BACKENDS="$(BACKENDS)" SECONDS=$(SECONDS) ./bench/million.sh

# Not part of `all` or `test`: needs clang (libFuzzer, ASan, UBSan). One
# harness per parser that reads network (or disk) bytes, in
# tests/fuzz/fuzz_*.c, each with a seed corpus in tests/fuzz/corpus/<name>/.
# The harnesses link against a copy of the library built by clang with the
# sanitizers and coverage instrumentation (build/fuzz/libechofs.a), so a
# harness calls the real code and names no source list. Run one by hand:
#   bin/fuzz_multipart -max_total_time=60 tests/fuzz/corpus/multipart
# `make fuzz-smoke` runs every harness for FUZZ_SECONDS (15) on a scratch
# copy of its corpus (the checked-in seeds are not touched); for CI.
# docs/FUZZING.md has what each harness checks and the long run's figures.
FUZZ_CC      := clang
BUILD_FUZZ   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -g -O1 $(FUZZ_SAN) -std=c17 -D_GNU_SOURCE -pthread -Iinclude -Isrc -I$(BUILD_FUZZ)/gen \
                $(PKG_CFLAGS) $(SYSTEMD_DEFS) -Wall -Wextra -Wno-unused-parameter
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(BUILD_FUZZ)/%.o) $(BUILD_FUZZ)/gen/dashboard_html.o \
                $(BUILD_FUZZ)/gen/echofs.pb-c.o
FUZZ_LIB     := $(BUILD_FUZZ)/libechofs.a
FUZZ_SECONDS ?= 15
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN     := $(FUZZ_NAMES:%=bin/fuzz_%)

fuzz: $(FUZZ_BIN)

$(BUILD_FUZZ)/%.o: %.c | $(BUILD_FUZZ)/gen/echofs.pb-c.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c -o $@ $<

$(BUILD_FUZZ)/gen/dashboard_html.c: src/master/dashboard.html scripts/embed.sh
	@mkdir -p $(dir $@)
	./scripts/embed.sh efs_dashboard_html $< > $@.tmp && mv $@.tmp $@

$(BUILD_FUZZ)/gen/echofs.pb-c.c $(BUILD_FUZZ)/gen/echofs.pb-c.h &: proto/echofs.proto \
		scripts/proto-messages.sh
	@mkdir -p $(dir $@)
	./scripts/proto-messages.sh $< $(BUILD_FUZZ)/gen

$(BUILD_FUZZ)/gen/%.o: $(BUILD_FUZZ)/gen/%.c
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

bin/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) $(LDLIBS)

# One target per harness, so `make -j2 fuzz-smoke` runs two at a time
# (each harness is one process on one core; test/all.sh does that).
FUZZ_SMOKE := $(FUZZ_NAMES:%=fuzz-smoke-%)
.PHONY: $(FUZZ_SMOKE)
fuzz-smoke: $(FUZZ_SMOKE)

# The harness's lines are printed together when it ends (they do not
# interleave under -j); on a failure its scratch directory, with the
# crash-/leak-/timeout- files, is kept.
$(FUZZ_SMOKE): fuzz-smoke-%: bin/fuzz_%
	@n=$*; work=$$(mktemp -d); cp tests/fuzz/corpus/$$n/* $$work/; \
	bin/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$$work/ $$work 2>$$work.log; rc=$$?; \
	{ echo "== fuzz_$$n for $(FUZZ_SECONDS) s"; \
	  grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' $$work.log; \
	  if [ $$rc -ne 0 ]; then tail -40 $$work.log; ls $$work/crash-* $$work/leak-* \
	    $$work/timeout-* 2>/dev/null; rm -f $$work.log; exit 1; fi; }; \
	rm -rf $$work $$work.log

# `make install PREFIX=/usr/local DESTDIR=...`: the binaries, the man pages,
# the systemd units (docs/OPERATIONS.md, "Installing without containers"),
# the sysusers.d entry for the `echofs` user, example environment files and
# the operator's documents. Nothing goes to /etc or /var: the units create
# their data directories, the operator copies the examples to /etc/echofs.
# The units get Type=notify when the installed master was linked with
# libsystemd (it then sends READY=1), Type=simple otherwise.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/echofs
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
INSTALL     ?= install
UNITS       := echofs-master.service echofs-worker@.service
EXAMPLES    := master.env.example worker.env.example worker-2.env.example
INSTALLED   := $(BINDIR)/echofs-master $(BINDIR)/echofs-worker $(BINDIR)/echofs \
               $(MANDIR)/man1/echofs.1 $(MANDIR)/man8/echofs-master.8 \
               $(MANDIR)/man8/echofs-worker.8 $(UNITS:%=$(UNITDIR)/%) \
               $(SYSUSERSDIR)/echofs.conf $(EXAMPLES:%=$(DOCDIR)/examples/%) \
               $(DOCDIR)/OPERATIONS.md $(DOCDIR)/API.md $(DOCDIR)/MONITORING.md \
               $(DOCDIR)/examples/echofs.rules.yml $(DOCDIR)/examples/echofs-grafana.json

install: $(PROGS)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0755 $(PROGS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 man/echofs.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 man/echofs-master.8 man/echofs-worker.8 $(DESTDIR)$(MANDIR)/man8/
	@type=simple; if readelf -d $(BIN)/echofs-master 2>/dev/null | grep -q 'libsystemd'; \
	  then type=notify; fi; \
	for u in $(UNITS); do \
	  echo "  $(DESTDIR)$(UNITDIR)/$$u (Type=$$type)"; \
	  sed -e 's|@BINDIR@|$(BINDIR)|g' -e "s|@TYPE@|$$type|g" -e 's|@DOCDIR@|$(DOCDIR)|g' \
	    deploy/systemd/$$u.in > $(DESTDIR)$(UNITDIR)/$$u.tmp && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && \
	  mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	$(INSTALL) -m 0644 deploy/systemd/echofs.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/echofs.conf
	$(INSTALL) -m 0644 $(EXAMPLES:%=deploy/systemd/%) $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -m 0644 deploy/prometheus/echofs.rules.yml $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -m 0644 deploy/grafana/echofs.json \
	  $(DESTDIR)$(DOCDIR)/examples/echofs-grafana.json
	$(INSTALL) -m 0644 docs/OPERATIONS.md docs/API.md docs/MONITORING.md $(DESTDIR)$(DOCDIR)/

# Removes exactly what `install` wrote (same PREFIX and DESTDIR), then the
# directories it made if they are empty; /etc/echofs and /var/lib/echofs
# (configuration and data) are never touched.
uninstall:
	rm -f $(INSTALLED:%=$(DESTDIR)%)
	-rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build bin

-include $(FUZZ_LIB_OBJ:.o=.d)
-include $(LIB_OBJ:.o=.d) $(UNIT_BIN:=.d) $(BUILD)/src/master/main.d $(BUILD)/src/worker/main.d $(BUILD)/src/cli/main.d
