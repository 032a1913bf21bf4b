#!/bin/sh
# Install the Debian packages the tests and benchmarks need, in one apt run:
#   docker.io and debootstrap: the docker tests (debootstrap makes a local python base image, because no
#     image can be pulled on our machines; the tests start the daemon themselves, see tests/dockerd.py,
#     so no service is enabled or started here);
#   wrk: the load generator of benchmarks/serving.py;
#   chromium: the headless browser the drift report's test drives through Playwright (tests/monitoring);
#   nodejs: runs the pull-request workflow's github-script comment step in tests/workflows;
#   util-linux (unshare): the read-only directory tests (tests/readonly.py).
# Idempotent: installs only the packages whose command is missing.
set -eu

missing=""
for pair in dockerd:docker.io debootstrap:debootstrap wrk:wrk chromium:chromium node:nodejs unshare:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done

if [ -z "$missing" ]; then
    echo "docker.io, debootstrap, wrk, chromium, nodejs and util-linux already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=""
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # $missing is a word list on purpose
$SUDO apt-get install -y -qq --no-install-recommends $missing
echo "installed:$missing"
