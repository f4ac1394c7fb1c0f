#!/usr/bin/env bash
# docker_base.sh - make sure the base images the Dockerfile names exist.
#
#   ./scripts/docker_base.sh            # debian:bookworm and debian:bookworm-slim
#
# The Dockerfile builds FROM debian:bookworm and runs FROM
# debian:bookworm-slim. Where a tag is already in the local image store,
# this script does nothing for it. Otherwise it tries `docker pull` (30 s),
# and where no registry is reachable (this development machine has none)
# it makes the image locally: `debootstrap --variant=minbase bookworm`
# from the Debian mirror apt uses (ECHOFS_DEBIAN_MIRROR overrides it),
# trimmed the way Debian's slim image is (no documentation, man pages or
# locales, no apt lists), then `docker import` under the missing tags. One
# local image serves both tags: the build stage installs what it needs
# with apt. The image is labelled org.echofs.base=debootstrap so that
# `docker image inspect` tells it from Docker Hub's.
#
# Needs root (debootstrap) only when it has to make an image; takes about
# a minute then. Exits 0 when both tags exist at the end, 1 otherwise.
set -euo pipefail

TAGS=(debian:bookworm debian:bookworm-slim)

missing=()
for tag in "${TAGS[@]}"; do
	docker image inspect "$tag" >/dev/null 2>&1 || missing+=("$tag")
done
[ ${#missing[@]} -eq 0 ] && exit 0

# A registry may be reachable (a normal machine): take the real images.
still=()
for tag in "${missing[@]}"; do
	if timeout 30 docker pull -q "$tag" >/dev/null 2>&1; then
		echo "docker_base: pulled $tag" >&2
	else
		still+=("$tag")
	fi
done
[ ${#still[@]} -eq 0 ] && exit 0

# The first deb.debian.org-style URI of the sources apt uses here.
mirror=${ECHOFS_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' \
			-e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\/debian\)[[:space:]].*/\2/p' |
		head -1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
if ! command -v debootstrap >/dev/null; then
	echo "docker_base: ${still[*]} missing, no registry, and debootstrap is not installed (apt-get install debootstrap)" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "docker_base: debootstrap needs root to make ${still[*]}" >&2
	exit 1
fi

root=$(mktemp -d /tmp/echofs-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "docker_base: debootstrap bookworm from $mirror (about a minute)" >&2
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1; then
	tail -20 "$root.log" >&2
	rm -f "$root.log"
	echo "docker_base: debootstrap failed" >&2
	exit 1
fi
rm -f "$root.log"

# What Debian's own images do: the sources of the release with its
# updates and security suites, no documentation installed from now on,
# apt that keeps no package files.
security=${mirror%/debian}/debian-security
case "$mirror" in
*deb.debian.org*) security=http://deb.debian.org/debian-security ;;
esac
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/* \
	"$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/*.log \
	"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true

first=${still[0]}
tar -C "$root" -c . | docker import \
	--change 'CMD ["bash"]' \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'LABEL org.echofs.base=debootstrap' \
	- "$first" >/dev/null
for tag in "${still[@]:1}"; do
	docker tag "$first" "$tag"
done
echo "docker_base: made ${still[*]} with debootstrap ($(docker image inspect -f '{{.Size}}' "$first" | awk '{printf "%.0f MB", $1/1e6}'))" >&2
