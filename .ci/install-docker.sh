#!/bin/sh
# Install what the docker tests need: Debian's Docker engine and debootstrap (used to make a
# local python base image, because no image can be pulled on our machines).
# Idempotent: does nothing when both are already installed. The tests start the daemon themselves
# (see tests/dockerd.py), so no service is enabled or started here.
set -eu

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"

if [ -z "$missing" ]; then
    echo "docker.io and debootstrap already installed"
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
