#!/usr/bin/env bash
# Builds novamedic's system packages: novamedic-agent and novamedic (the
# controller and CLI), each as a .deb (cargo-deb) and an .rpm
# (cargo-generate-rpm).
#
# Usage: scripts/build-packages.sh [--dev] [OUT_DIR]   (default: target/packages)
#   --dev  package the debug build that `cargo build` made, with fast
#          compression: quick, for the install tests only
#
# Installs the two cargo subcommands at pinned versions with
# `cargo install --locked` when they are missing or at another version
# (about 4 minutes once, then cached in ~/.cargo/bin). Generates the man
# pages and bash and zsh completions from the binaries' clap definitions
# (their hidden `generate-docs` subcommand) into package-docs beside the
# binaries, where the package metadata in agent/Cargo.toml and
# controller/Cargo.toml picks them up.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

profile=release
out_dir=
for arg in "$@"; do
    case $arg in
        --dev) profile=dev ;;
        -h | --help)
            sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "build-packages: unknown option $arg (expected --dev)" >&2
            exit 2
            ;;
        *) out_dir=$arg ;;
    esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
out_dir=${out_dir:-$target_dir/packages}
case $profile in
    dev) binary_dir=$target_dir/debug ;;
    *) binary_dir=$target_dir/$profile ;;
esac
docs_dir=$binary_dir/package-docs

step() {
    echo "build-packages: $*"
}

# Installs cargo subcommand $1 at version $2 unless that version is there.
require_tool() {
    local tool=$1 version=$2 installed
    installed=$(cargo "${tool#cargo-}" --version 2>/dev/null || true)
    if [[ $installed != *" $version"* ]]; then
        step "installing $tool $version (cargo install --locked)"
        cargo install --quiet --locked --version "$version" "$tool"
    fi
}

# Directory of the crate that builds package $1.
crate_dir() {
    case $1 in
        novamedic-agent) echo agent ;;
        novamedic) echo controller ;;
    esac
}

require_tool cargo-deb "$CARGO_DEB_VERSION"
require_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

step "building the binaries (profile $profile)"
cargo build --locked --profile "$profile" -p novamedic-agent -p novamedic --bins

step "generating man pages and completions into $docs_dir"
rm -rf "$docs_dir"
"$binary_dir/novamedic-agent" generate-docs "$docs_dir/agent" >/dev/null
"$binary_dir/novamedic" generate-docs "$docs_dir/controller" >/dev/null
gzip -9 --no-name "$docs_dir"/*/man/*.1

mkdir -p "$out_dir"
deb_options=(--no-build --locked --profile "$profile" --output "$out_dir")
rpm_options=(--profile "$profile" --output "$out_dir/")
if [[ $profile == dev ]]; then
    # A debug binary is over 100 MB. cargo-deb strips it and compresses
    # fast; cargo-generate-rpm cannot strip, so its payload stays
    # uncompressed, which takes seconds instead of minutes.
    deb_options+=(--strip --fast)
    rpm_options+=(--payload-compress none)
fi
for package in novamedic-agent novamedic; do
    step "building $package .deb"
    cargo deb -p "$package" "${deb_options[@]}" >/dev/null
    step "building $package .rpm"
    cargo generate-rpm -p "$(crate_dir "$package")" "${rpm_options[@]}" >/dev/null
done
ls -l "$out_dir"
