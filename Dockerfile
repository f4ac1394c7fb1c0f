# Dockerfile - the EchoFS image: echofs-master, echofs-worker and the echofs
# CLI on Debian 12. docs/DEPLOY.md says how to build and run it.
#
#   ./scripts/docker_base.sh                     # the base images, when missing
#   docker build --network host -t echofs:latest .
#   docker run --rm echofs:latest                # the master (the default)
#   docker run --rm echofs:latest echofs-worker  # a worker
#
# Two stages. `build` compiles on debian:bookworm with the -dev packages.
# The runtime stage is debian:bookworm-slim with only the shared libraries
# the binaries link (the list follows Makefile's PKGS), tini as PID 1,
# curl for the health check and ca-certificates for TLS and AWS. The
# build's apt layer comes before the sources, so a source change
# recompiles without downloading packages again.
#
# Configuration is only the documented environment variables
# (docs/OPERATIONS.md#configuration); the image sets the data
# directories under the /var/lib/echofs volume and nothing else.

ARG BUILD_IMAGE=debian:bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		gcc libc6-dev make pkg-config \
		libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libisal-dev \
		libssl-dev libsqlite3-dev libpq-dev libhiredis-dev libjwt-dev libexpat1-dev \
		libgrpc-dev libprotobuf-c-dev protobuf-c-compiler \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY scripts/embed.sh scripts/proto-messages.sh scripts/
COPY proto proto/
COPY include include/
COPY src src/
# Only the three programs (not the test drivers `make all` also builds).
RUN make -j"$(nproc)" bin/echofs-master bin/echofs-worker bin/echofs \
	&& install -D -s -m 0755 -t /out/usr/local/bin bin/echofs-master bin/echofs-worker bin/echofs

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		libmicrohttpd12 libcurl4 libjansson4 libisal2 libssl3 libsqlite3-0 \
		libpq5 libhiredis0.14 libjwt0 libexpat1 libgrpc29 libprotobuf-c1 \
		ca-certificates curl tini \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 echofs \
	&& useradd --system --uid 10001 --gid echofs --home-dir /var/lib/echofs \
		--no-create-home --shell /usr/sbin/nologin echofs \
	&& install -d -o echofs -g echofs -m 0700 /var/lib/echofs
COPY --from=build /out/ /
COPY deploy/healthcheck.sh /usr/local/bin/echofs-healthcheck

# The master keeps its SQLite store (when DATABASE_URL is unset) under
# DATA_DIR, a worker its chunks under WORKER_DATA_DIR: one volume holds
# either. Both daemons listen on every interface by default.
ENV DATA_DIR=/var/lib/echofs/master \
	WORKER_DATA_DIR=/var/lib/echofs/worker
VOLUME ["/var/lib/echofs"]
USER echofs:echofs
WORKDIR /var/lib/echofs
EXPOSE 8080 8081 8090

# tini is PID 1: it forwards SIGTERM to the daemon (which then stops
# gracefully: in-flight requests end, the store closes) and reaps
# children. `docker run --init` is not needed.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["echofs-master"]
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s --retries=3 \
	CMD ["/usr/local/bin/echofs-healthcheck"]
