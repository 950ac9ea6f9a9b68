#!/usr/bin/env bash
# Builds the Debian tree that the system tests boot with systemd-nspawn.
#
# Usage: scripts/build-rootfs.sh [ROOT]   (default: target/novamedic-rootfs)
#
# The tree is rebuilt only when it is missing or its stamp (a SHA-256 of this
# script, which contains every input: suite, mirror, packages, setup steps)
# differs. It is built in ROOT.tmp and renamed into place, so an interrupted
# build never leaves a half-made ROOT behind. Needs root, debootstrap and
# network access to the Debian mirror; takes about a minute.
set -euo pipefail

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
# systemd and dbus are what the tests exercise; procps gives the tests ps and
# pgrep inside the container. polkitd enforces the agent package's polkit
# rule (libpam-systemd provides the logind it depends on, which debootstrap
# does not pick by itself), and adduser is what that package's maintainer
# scripts call.
PACKAGES=systemd,dbus,systemd-sysv,init-system-helpers,procps,polkitd,libpam-systemd,adduser

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${1:-$repo_root/target/novamedic-rootfs}
stamp_name=.novamedic-rootfs-stamp
stamp=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)

if [[ $(id -u) -ne 0 ]]; then
    echo "build-rootfs: must run as root (debootstrap creates device nodes and root-owned files)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    echo "build-rootfs: debootstrap not found; install it with: apt-get install debootstrap" >&2
    exit 1
fi

mkdir -p "$(dirname "$root")"
# One build at a time: parallel test runs wait here instead of racing.
exec 9>"$root.lock"
flock 9

if [[ -f $root/$stamp_name && $(cat "$root/$stamp_name") == "$stamp" ]]; then
    echo "build-rootfs: $root is up to date"
    exit 0
fi

echo "build-rootfs: building $root ($SUITE, packages $PACKAGES)"
rm -rf "$root.tmp"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root.tmp" "$MIRROR" \
    >"$root.debootstrap.log" 2>&1; then
    echo "build-rootfs: debootstrap failed; last lines of $root.debootstrap.log:" >&2
    tail -n 30 "$root.debootstrap.log" >&2
    exit 1
fi

# Keep the image small and the boot quiet: no package caches, no getty on the
# console (the tests never log in), no time sync or journal flushing.
rm -rf "$root.tmp"/var/cache/apt/archives/*.deb "$root.tmp"/var/lib/apt/lists/*
chroot "$root.tmp" systemctl mask --quiet \
    console-getty.service getty@.service systemd-timesyncd.service \
    apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
mkdir -p "$root.tmp/etc/novamedic" "$root.tmp/var/log/nova"
# debootstrap copies the build host's name; without the file each container
# is named after its machine name, which the tests use as the node name.
rm -f "$root.tmp/etc/hostname"

echo "$stamp" >"$root.tmp/$stamp_name"
if [[ -e $root ]]; then
    mv "$root" "$root.old"
fi
mv "$root.tmp" "$root"
rm -rf "$root.old"
echo "build-rootfs: built $root"
