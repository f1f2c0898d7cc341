#!/usr/bin/env bash
# Installs the XRootD server and client used by the storage tests (tests/fixtures/xrootd.py).
# Idempotent: a quick no-op when both binaries are present. moto[server] (the S3 server) is a
# pinned Python test dependency and needs nothing here.
set -euo pipefail

if command -v xrootd >/dev/null 2>&1 && command -v xrdcp >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
else
    SUDO=""
fi

export DEBIAN_FRONTEND=noninteractive
${SUDO} apt-get update -qq
${SUDO} apt-get install -y -qq --no-install-recommends xrootd-server xrootd-client >/dev/null

# The server refuses to run as root; the fixture starts it as this user.
if ! id xrootd >/dev/null 2>&1; then
    ${SUDO} useradd --system --no-create-home --shell /usr/sbin/nologin xrootd
fi
