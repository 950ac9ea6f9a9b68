#!/usr/bin/env bash
# Builds the Debian tree with the real nova-compute (Debian 12's nova 26, Zed)
# that tests/tests/real_nova.rs boots with systemd-nspawn: nova-compute with
# nova's fake virt driver, nova-conductor, the Placement API and RabbitMQ, all
# on 127.0.0.1 only. nova-api, nova-scheduler and Glance are installed but not
# enabled: tests/src/nova_api.rs starts them in the tests that create servers.
#
# Usage: scripts/build-nova-rootfs.sh [ROOT]   (default: target/novamedic-nova-rootfs)
#
# Two cached stages, each rebuilt only when its stamp differs:
# - ROOT.packages: the base tree of scripts/build-rootfs.sh plus the packages
#   (stamp: the base tree's stamp, this script's package list);
# - ROOT: a copy of ROOT.packages plus the files in packaging/test/nova and
#   the databases (stamp: this script and those files).
# Each stage is built in a .tmp directory and renamed into place, so an
# interrupted build never leaves a half-made tree. Needs root and network
# access to the Debian mirror. From scratch it took 176 s on a two-core VM
# (394 packages, 164 MB download); each stage is about 1 GB on disk.
set -euo pipefail

# nova-compute-ironic is the lightest package that provides
# nova-compute-hypervisor: client libraries only, no libvirtd or qemu.
# nftables and iproute2 (ss) let the liveness probe tests cut one AMQP
# connection inside a container with a private network. python3-libvirt lets
# the libvirt driver load, so that without libvirtd it fails on the
# connection as on a real node. nova-api, nova-scheduler and glance-api serve
# the tests that create servers; their units stay disabled.
PACKAGES="python3-nova nova-common nova-conductor nova-compute nova-compute-ironic
rabbitmq-server python3-placement placement-common nftables iproute2
python3-libvirt nova-api nova-scheduler glance-api curl"

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config_dir=$repo_root/packaging/test/nova
root=${1:-$repo_root/target/novamedic-nova-rootfs}
base=${NOVAMEDIC_ROOTFS:-$repo_root/target/novamedic-rootfs}
packages_root=$root.packages
stamp_name=.novamedic-rootfs-stamp

log() {
    echo "build-nova-rootfs: $*"
}

fail() {
    echo "build-nova-rootfs: $*" >&2
    exit 1
}

if [[ $(id -u) -ne 0 ]]; then
    fail "must run as root (chroot, and files owned by the nova, placement and rabbitmq users)"
fi

# Mounts of the chroot in use, unmounted on any exit.
chroot_mounts=()

unmount_chroot() {
    local i
    for ((i = ${#chroot_mounts[@]} - 1; i >= 0; i--)); do
        umount "${chroot_mounts[i]}" 2>/dev/null || umount -l "${chroot_mounts[i]}" || true
    done
    chroot_mounts=()
}
trap unmount_chroot EXIT

mount_chroot() {
    local tree=$1
    mount -t proc proc "$tree/proc" && chroot_mounts+=("$tree/proc")
    mount -t sysfs sysfs "$tree/sys" && chroot_mounts+=("$tree/sys")
    mount --bind /dev "$tree/dev" && chroot_mounts+=("$tree/dev")
}

in_chroot() {
    local tree=$1
    shift
    chroot "$tree" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
}

# Replaces $1 with $1.tmp, keeping the old tree until the new one is in place.
promote() {
    local target=$1
    if [[ -e $target ]]; then
        mv "$target" "$target.old"
    fi
    mv "$target.tmp" "$target"
    rm -rf "$target.old"
}

stamp_of() {
    cat "$1/$stamp_name" 2>/dev/null || true
}

build_packages_stage() {
    local stamp=$1 tmp=$packages_root.tmp
    log "installing nova, placement and RabbitMQ into $packages_root"
    rm -rf "$tmp"
    cp -a "$base" "$tmp"
    rm -f "$tmp/$stamp_name"

    # No postinst may start a service: RabbitMQ would listen on all addresses
    # of the build host.
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
    chmod 0755 "$tmp/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"

    mount_chroot "$tmp"
    local apt_log=$packages_root.apt.log
    # shellcheck disable=SC2086 # one word per package
    if ! { in_chroot "$tmp" apt-get update -q &&
        in_chroot "$tmp" apt-get install -y -q --no-install-recommends $PACKAGES; } \
        >"$apt_log" 2>&1; then
        unmount_chroot
        tail -n 30 "$apt_log" >&2
        fail "apt-get failed in $tmp; the whole output is in $apt_log"
    fi
    in_chroot "$tmp" apt-get clean
    unmount_chroot

    rm -f "$tmp/usr/sbin/policy-rc.d" "$tmp/etc/resolv.conf"
    rm -rf "$tmp"/var/lib/apt/lists/*
    echo "$stamp" >"$tmp/$stamp_name"
    promote "$packages_root"
}

install_file() {
    local mode=$1 source=$2 target=$3
    install -D -m "$mode" "$config_dir/$source" "$tmp/$target"
}

install_config() {
    local tmp=$1

    # nova-compute reads nova.conf and nova-compute.conf (Debian's unit
    # passes both); the conductor also reads the file with the databases.
    install_file 0640 nova.conf etc/nova/nova.conf
    install_file 0640 nova-compute.conf etc/nova/nova-compute.conf
    install_file 0640 nova-conductor.conf etc/nova/nova-conductor.conf
    install_file 0644 default-nova-conductor etc/default/nova-conductor
    in_chroot "$tmp" chown root:nova /etc/nova/nova.conf /etc/nova/nova-compute.conf \
        /etc/nova/nova-conductor.conf

    install_file 0640 placement.conf etc/placement/placement.conf
    in_chroot "$tmp" chown root:placement /etc/placement/placement.conf
    install_file 0644 placement-api.service etc/systemd/system/placement-api.service

    install_file 0644 rabbitmq-env.conf etc/rabbitmq/rabbitmq-env.conf
    install_file 0644 rabbitmq.conf etc/rabbitmq/rabbitmq.conf
    install_file 0644 epmd-loopback.conf etc/systemd/system/epmd.socket.d/loopback.conf
    install_file 0644 rabbitmq-server-stop.conf \
        etc/systemd/system/rabbitmq-server.service.d/stop.conf
    install_file 0755 wait-for-port usr/local/bin/novamedic-wait-for-port
    install_file 0644 nova-compute-order.conf \
        etc/systemd/system/nova-compute.service.d/order.conf
    install_file 0644 nova-conductor-order.conf \
        etc/systemd/system/nova-conductor.service.d/order.conf
    local unit
    for unit in nova-compute nova-conductor placement-api rabbitmq-server; do
        install_file 0644 no-start-limit.conf \
            "etc/systemd/system/$unit.service.d/no-start-limit.conf"
    done
    # RabbitMQ's node is rabbit@localhost, which must resolve without DNS.
    install_file 0644 hosts etc/hosts

    in_chroot "$tmp" systemctl enable --quiet placement-api.service

    # nova-api, nova-scheduler and Glance serve only the tests that create
    # servers: installed, disabled, started by those tests.
    install_file 0640 nova-api.conf etc/nova/nova-api.conf
    install_file 0640 nova-scheduler.conf etc/nova/nova-scheduler.conf
    install_file 0644 default-nova-scheduler etc/default/nova-scheduler
    in_chroot "$tmp" chown root:nova /etc/nova/nova-api.conf /etc/nova/nova-scheduler.conf
    install_file 0644 nova-api-paste.ini etc/nova/nova-api-paste.ini
    install_file 0644 novamedic_noauth_token.py \
        usr/local/lib/novamedic-test/novamedic_noauth_token.py
    install_file 0644 nova-api.service etc/systemd/system/nova-api.service
    install_file 0755 novamedic-neutron-stand-in usr/local/bin/novamedic-neutron-stand-in
    install_file 0644 neutron-stand-in.service etc/systemd/system/neutron-stand-in.service
    install_file 0644 glance-api.service etc/systemd/system/glance-api.service
    install_file 0640 glance-api.conf etc/glance/glance-api.conf
    in_chroot "$tmp" chown root:glance /etc/glance/glance-api.conf
    install_file 0644 no-start-limit.conf \
        etc/systemd/system/nova-scheduler.service.d/no-start-limit.conf
    in_chroot "$tmp" systemctl disable --quiet nova-api.service nova-scheduler.service \
        glance-api.service
    in_chroot "$tmp" systemctl mask --quiet nova-api-metadata.service
    # Pulled in by os-brick; nothing in the tests uses iSCSI.
    in_chroot "$tmp" systemctl mask --quiet iscsid.service iscsid.socket open-iscsi.service
}

# Creates the Placement and nova databases (SQLite) once per tree.
sync_databases() {
    local tmp=$1
    in_chroot "$tmp" install -d -o placement -g placement /var/lib/placement
    in_chroot "$tmp" su -s /bin/sh placement -c \
        'placement-manage --config-file /etc/placement/placement.conf db sync'
    local manage="nova-manage --config-file /etc/nova/nova.conf --config-file /etc/nova/nova-conductor.conf"
    in_chroot "$tmp" su -s /bin/sh nova -c "$manage api_db sync"
    in_chroot "$tmp" su -s /bin/sh nova -c "$manage cell_v2 map_cell0"
    in_chroot "$tmp" su -s /bin/sh nova -c "$manage cell_v2 create_cell --name cell1"
    in_chroot "$tmp" su -s /bin/sh nova -c "$manage db sync"
    in_chroot "$tmp" su -s /bin/sh glance -c \
        'glance-manage --config-file /etc/glance/glance-api.conf db_sync'
}

build_config_stage() {
    local stamp=$1 tmp=$root.tmp
    log "configuring $root"
    rm -rf "$tmp"
    cp -a "$packages_root" "$tmp"
    rm -f "$tmp/$stamp_name"

    install_config "$tmp"
    local setup_log=$root.setup.log
    mount_chroot "$tmp"
    if ! sync_databases "$tmp" >"$setup_log" 2>&1; then
        unmount_chroot
        tail -n 30 "$setup_log" >&2
        fail "database setup failed in $tmp; the whole output is in $setup_log"
    fi
    unmount_chroot
    # Logs of the set-up commands would be read as nova-compute's own.
    find "$tmp/var/log/nova" "$tmp/var/log/placement" "$tmp/var/log/glance" -type f -delete 2>/dev/null || true

    echo "$stamp" >"$tmp/$stamp_name"
    promote "$root"
}

started=$(date +%s)
"$repo_root/scripts/build-rootfs.sh" "$base"

mkdir -p "$(dirname "$root")"
# One build at a time: parallel test runs wait here instead of racing.
exec 9>"$root.lock"
flock 9

packages_stamp=$( (stamp_of "$base" && echo "$PACKAGES") | sha256sum | cut -d' ' -f1)
if [[ $(stamp_of "$packages_root") != "$packages_stamp" ]]; then
    build_packages_stage "$packages_stamp"
fi

config_stamp=$( (echo "$packages_stamp" && cat "${BASH_SOURCE[0]}" &&
    find "$config_dir" -type f -print0 | sort -z | xargs -0 cat) | sha256sum | cut -d' ' -f1)
if [[ $(stamp_of "$root") == "$config_stamp" ]]; then
    log "$root is up to date"
    exit 0
fi
build_config_stage "$config_stamp"
log "built $root in $(($(date +%s) - started)) s"
