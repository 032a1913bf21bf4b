#!/bin/sh
# Install what benchmarks/serving.py needs on the machine: Debian's wrk (the closed-loop HTTP load
# generator). The baselines it compares against (MLServer, mlflow) are not installed here: the
# benchmark puts them in virtualenvs of its own. Idempotent: does nothing when wrk is installed.
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
