#!/bin/sh
# Install wrk (Debian's package), the load generator the serving benchmark and the speed checks of
# the scoring server use. Idempotent: does nothing when wrk is already installed.
set -eu

if command -v wrk >/dev/null 2>&1; then
    echo "wrk already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=""
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends wrk
echo "installed: wrk"
