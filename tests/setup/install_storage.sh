#!/usr/bin/env bash
# Installs the XRootD server and client used by the storage tests (tests/fixtures/xrootd.py)
# and the grid security pieces of tests/fixtures/grid.py: the server's GSI and ztn plugins
# (in xrootd-server-plugins), SciTokens authorisation (xrootd-scitokens-plugins), the
# scitokens-cpp tools, voms-proxy-fake (voms-clients) and openssl for a test CA.
# Idempotent: a quick no-op when everything is present. moto[server] (the S3 server) is a
# pinned Python test dependency and needs nothing here.
set -euo pipefail

SCITOKENS_LIB=/usr/lib/x86_64-linux-gnu/libXrdAccSciTokens-5.so
have_all() {
    command -v xrootd >/dev/null 2>&1 && command -v xrdcp >/dev/null 2>&1 \
        && command -v voms-proxy-fake >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 \
        && command -v scitokens-verify >/dev/null 2>&1 \
        && { [ -e "$SCITOKENS_LIB" ] || dpkg -s xrootd-scitokens-plugins >/dev/null 2>&1; } \
        && id xrootd >/dev/null 2>&1
}
if have_all; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
else
    SUDO=""
fi

export DEBIAN_FRONTEND=noninteractive
${SUDO} apt-get update -qq
${SUDO} apt-get install -y -qq --no-install-recommends xrootd-server xrootd-client \
    xrootd-server-plugins xrootd-client-plugins xrootd-scitokens-plugins scitokens-cpp \
    voms-clients openssl >/dev/null

# The server refuses to run as root; the fixture starts it as this user.
if ! id xrootd >/dev/null 2>&1; then
    ${SUDO} useradd --system --no-create-home --shell /usr/sbin/nologin xrootd
fi
