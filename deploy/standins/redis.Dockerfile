# redis.Dockerfile - a stand-in for Docker Hub's redis:7 image, from
# Debian 12's redis-server (7.0), for machines with no registry (the
# tests here): redis-server runs with its compiled-in defaults and the
# command's arguments, as user redis, in the /data volume.
# test/docker.sh builds it as echofs-standin/redis:7.
ARG RUNTIME_IMAGE=debian:bookworm-slim
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
	&& rm -rf /var/lib/apt/lists/* \
	&& install -d -o redis -g redis -m 0700 /data
VOLUME ["/data"]
WORKDIR /data
USER redis
CMD ["redis-server"]
