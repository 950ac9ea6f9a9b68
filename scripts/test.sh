#!/usr/bin/env bash
# novamedic's test command: builds everything and runs every crate's tests,
# including the system tests that boot real systemd in containers.
#
# Usage: scripts/test.sh [--lint | --no-lint]
#   --lint     also run `cargo fmt --check` and clippy with -D warnings
#              (the default when CI=true)
#   --no-lint  skip them, also in CI
#
# The system tests need root, debootstrap, systemd-nspawn and a Debian tree
# that this script builds once into target/novamedic-rootfs (about 160 MB,
# a couple of minutes, then cached). The install tests also need the .deb
# and .rpm packages, which scripts/build-packages.sh --dev builds from the
# debug binaries, and rpm to inspect the .rpm. Run as root, it installs the
# tools with apt-get when they are missing. As another user, the system
# tests fail with the reason unless NOVAMEDIC_SKIP_SYSTEM_TESTS=1 is set.
set -euo pipefail

lint=false
if [[ ${CI:-} == true ]]; then
    lint=true
fi
for arg in "$@"; do
    case $arg in
        --lint) lint=true ;;
        --no-lint) lint=false ;;
        -h | --help)
            sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "test.sh: unknown argument $arg (expected --lint or --no-lint)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing_packages() {
    command -v debootstrap >/dev/null || echo debootstrap
    command -v systemd-nspawn >/dev/null || echo systemd-container
    command -v rpm >/dev/null || echo rpm
}

step() {
    echo "==> $*"
}

if [[ $(id -u) -eq 0 ]]; then
    packages=$(missing_packages)
    if [[ -n $packages ]]; then
        step "installing $packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086 # one word per package
        apt-get install -y -qq --no-install-recommends $packages >/dev/null
    fi
    step "building the system tests' Debian tree (cached)"
    scripts/build-rootfs.sh
    step "building the real nova-compute tree for the system tests (cached)"
    scripts/build-nova-rootfs.sh
else
    packages=$(missing_packages)
    if [[ -n $packages ]]; then
        echo "test.sh: system tests need: apt-get install $packages (as root)" >&2
    fi
    echo "test.sh: not root, so the system tests cannot boot containers;" \
        "they fail unless NOVAMEDIC_SKIP_SYSTEM_TESTS=1 is set" >&2
fi

if [[ $lint == true ]]; then
    step "cargo fmt --check"
    cargo fmt --all --check
    step "cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

# The system tests run the workspace's binaries from target/debug, which
# `cargo test` does not build for another crate's tests.
step "cargo build --workspace --bins"
cargo build --workspace --locked --bins

# The install tests read the packages from target/packages. The first run
# installs cargo-deb and cargo-generate-rpm (cached in ~/.cargo/bin).
step "building the .deb and .rpm packages (scripts/build-packages.sh --dev)"
scripts/build-packages.sh --dev

step "cargo test --workspace"
cargo test --workspace --locked

# The controller's diagnose test above wrote a Markdown report; render its
# Mermaid diagrams with mermaid in headless Chromium (installed when root).
if [[ $(id -u) -eq 0 ]] || { command -v chromium && command -v npm; } >/dev/null; then
    step "rendering the diagnose report's Mermaid diagrams"
    scripts/check-mermaid.sh target/diagnose-report/report.md
else
    echo "test.sh: not root and chromium or npm missing: skipping the Mermaid render check" >&2
fi
