#!/usr/bin/env bash
# Services the test suite starts itself (PostgreSQL for the team tracking-server tests), installed once
# from Debian's registry when missing. Java 17 for Spark is part of the machine image.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "PostgreSQL is not installed and this is not root: run 'apt-get install postgresql' as root" >&2
  exit 1
fi
echo "installing PostgreSQL (Debian package) for the team tracking-server tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
