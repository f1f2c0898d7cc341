#!/usr/bin/env bash
# Installs podman, runc, debootstrap and the CNI dnsname plugin (name resolution between
# containers on a podman network) for the `facility`-marked tests and `make image` /
# `make facility-test`. Idempotent: a quick no-op when all are present.
set -euo pipefail

missing=()
for tool in podman runc debootstrap; do
    command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
done
[ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
[ "${#missing[@]}" -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_podman.sh: need root (or sudo) to apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
