#!/usr/bin/env bash
# Assembles the build's base image (Debian bookworm with Python 3.11 and pip) from Debian's
# packages, for machines that cannot reach Docker Hub; tests/e2e/test_docker.py uses it.
#   deploy/docker/base-image.sh [TAG]        (default grok-proxy-base:bookworm)
#   docker build --build-arg BASE_IMAGE=grok-proxy-base:bookworm -t grok-proxy .
# debootstrap takes about a minute, so the root file system is kept as a tarball in the
# cache directory ($GROK_PROXY_CACHE, else ~/.cache/grok-proxy) and later runs only import
# it. Needs root, debootstrap and a running Docker engine.
set -euo pipefail

tag=${1:-grok-proxy-base:bookworm}
cache=${GROK_PROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/grok-proxy}
tarball=$cache/base-bookworm.tar

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag is already there"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  # The Debian mirror apt already uses here (it may be the only one reachable).
  mirror=$(grep -hsE '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/* \
    | grep -v security | sed -E 's/^deb (\[[^]]*\] )?//; s/^URIs: *//' \
    | awk 'NR == 1 {print $1}' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$root" "$mirror" >/dev/null
  # Certificate authorities this machine added (a TLS-inspecting egress proxy, a company CA)
  # are trusted inside too, or the build could not reach PyPI through them.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  # What an image never needs: downloaded packages, package lists, documentation, locales.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
  mkdir -p "$cache"
  tar -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
fi

# An imported file system has no configuration: give it the PATH and locale the official
# python images have, so the Dockerfile's `ENV PATH=...:$PATH` extends a real PATH.
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$tarball" "$tag" >/dev/null
echo "$tag imported from $tarball"
