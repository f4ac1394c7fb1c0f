#!/bin/sh
# echofs-healthcheck - the image's HEALTHCHECK: is the daemon of this
# container answering on its own port?
#
# The image runs either daemon, so the probe looks at which one is
# running (/proc/*/comm) and asks it over loopback:
#   echofs-master  GET /api/v1/health on MASTER_PORT (default 8080);
#                  healthy on 200, i.e. the master serves and reaches its
#                  metadata store. A "degraded" cluster (fewer live
#                  workers than REPLICATION_FACTOR, under-replicated
#                  chunks) still answers 200: restarting the master
#                  would not fix it, so it is not the container's health.
#   echofs-worker  GET /health on WORKER_PORT (default 8081) with the
#                  cluster secret.
# With TLS_CERT_FILE set the probe uses https and does not check the
# certificate (-k): it asks its own process over 127.0.0.1, whose name
# the certificate does not carry. Exit 0 healthy, 1 not.
set -u
role=""
for comm in /proc/[0-9]*/comm; do
	read -r name <"$comm" 2>/dev/null || continue
	case "$name" in
	echofs-master | echofs-worker)
		role=$name
		break
		;;
	esac
done
scheme=http
[ -n "${TLS_CERT_FILE:-}" ] && scheme=https
case "$role" in
echofs-master)
	exec curl -fsS -k -o /dev/null --max-time 5 "$scheme://127.0.0.1:${MASTER_PORT:-8080}/api/v1/health"
	;;
echofs-worker)
	exec curl -fsS -k -o /dev/null --max-time 5 -H "Authorization: Bearer ${CLUSTER_SECRET:-}" \
		"$scheme://127.0.0.1:${WORKER_PORT:-8081}/health"
	;;
*)
	echo "echofs-healthcheck: neither echofs-master nor echofs-worker is running" >&2
	exit 1
	;;
esac
