#!/usr/bin/env bash
# Build the local base image groupwatch/base:bookworm from a debootstrap rootfs.
#
# For machines that reach a Debian mirror but no image registry. Idempotent: does nothing
# when the image exists (FORCE=1 rebuilds). Needs root, debootstrap and a running dockerd.
#
#   docker/build-base.sh                     # image groupwatch/base:bookworm
#   BASE_IMAGE=my/base:tag MIRROR=http://deb.debian.org/debian docker/build-base.sh
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-groupwatch/base:bookworm}"
SUITE="${SUITE:-bookworm}"
ROOTFS="${ROOTFS:-/tmp/groupwatch-rootfs-${SUITE}}"

# The mirror the host's apt already uses (deb822 sources first, then sources.list).
detect_mirror() {
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -e security -e '^$' | head -n1 || true)
    if [[ -z "$uri" ]]; then
        uri=$(grep -hs '^deb ' /etc/apt/sources.list 2>/dev/null \
            | awk '{print $2}' | grep -v security | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${MIRROR:-$(detect_mirror)}"

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "build-base: $BASE_IMAGE exists (FORCE=1 to rebuild)"
    exit 0
fi

command -v debootstrap >/dev/null || { echo "build-base: apt-get install -y debootstrap" >&2; exit 1; }

if [[ ! -x "$ROOTFS/usr/bin/apt-get" || "${FORCE:-0}" == 1 ]]; then
    rm -rf "$ROOTFS"
    echo "build-base: debootstrap --variant=minbase $SUITE $ROOTFS $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR"
    # apt sources inside the image: the same mirror, plus updates and security.
    cat > "$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security} $SUITE-security main
SOURCES
    # Keep images small: no docs, no apt caches.
    cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/01-groupwatch-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
NODOC
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
fi

echo "build-base: importing $ROOTFS as $BASE_IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$BASE_IMAGE"
docker image inspect "$BASE_IMAGE" --format 'build-base: {{.Id}} {{.Size}} bytes'
