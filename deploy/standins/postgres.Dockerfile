# postgres.Dockerfile - a stand-in for Docker Hub's postgres:15 image, from
# Debian 12's postgresql-15, for machines with no registry (the tests
# here). It keeps the part of the official image's interface
# deploy/compose.yml uses: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB
# create the role and database on the first start, PGDATA
# (/var/lib/postgresql/data) is the volume, PGPORT the port, pg_isready
# on PATH. test/docker.sh builds it as echofs-standin/postgres:15.
ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
	&& rm -rf /var/lib/apt/lists/* \
	&& install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
VOLUME ["/var/lib/postgresql/data"]
USER postgres
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
