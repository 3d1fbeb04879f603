#!/usr/bin/env bash
# Provisions the real servers the tests run against, so that `npm test` works
# on a fresh machine (npm runs this as `pretest`). Each step is skipped when
# its server is already there:
#   - MinIO, built once from its Go module (scripts/build-minio.sh; needs Go);
#   - moto's S3 server, from PyPI (pip install 'moto[server]');
#   - redis-server, from Debian's packages (apt-get; needs root, else says so).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-minio.sh >/dev/null

if ! command -v moto_server >/dev/null 2>&1; then
  echo "test-servers: installing moto's server (pip install 'moto[server]')" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.1' >&2
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-servers: installing redis-server (apt-get install redis-server)" >&2
    (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
  else
    echo "test-servers: redis-server is missing; install it (Debian/Ubuntu: sudo apt-get install -y redis-server) and run again" >&2
    exit 1
  fi
fi
