#!/usr/bin/env bash
# Services the test suite starts itself (PostgreSQL for the team tracking-server tests), installed once
# from Debian's registry when missing, and Java 17 for Spark where the machine image lacks it.
set -euo pipefail
packages=()
if ! command -v java >/dev/null 2>&1; then  # Spark (`suite score --engine spark`, tests/test_spark.py)
  packages+=(openjdk-17-jre-headless)
fi
if ! { command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }; then
  packages+=(postgresql)
fi
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing ${packages[*]} and this is not root: run 'apt-get install ${packages[*]}' as root" >&2
  exit 1
fi
echo "installing ${packages[*]} (Debian packages) for the tracking-server and Spark tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
