#!/usr/bin/env bash
# Builds the MinIO server used by the test harness from its Go module, once.
# The binary is cached outside the clone so CI runs and later sessions reuse it.
set -euo pipefail
# The Go module proxy refuses 9e49d5e7a648 (RELEASE.2025-10-15); this is the archived
# repository's final commit, the newest version the proxy serves.
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
CACHE_DIR="${CAIRN_CACHE_DIR:-$HOME/.cache/cairn}"
BIN="$CACHE_DIR/minio-$MINIO_VERSION"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build-minio: Go is not installed; install Go 1.24+ (https://go.dev/dl or 'apt-get install golang') and run again" >&2
  exit 1
fi
mkdir -p "$CACHE_DIR"
tmp_bin="$(mktemp -d "$CACHE_DIR/gobin.XXXXXX")"
echo "build-minio: building github.com/minio/minio@$MINIO_VERSION (first run only, several minutes)" >&2
GOBIN="$tmp_bin" GOFLAGS="-trimpath" go install "github.com/minio/minio@$MINIO_VERSION" >&2
mv "$tmp_bin/minio" "$BIN"
rmdir "$tmp_bin"
echo "$BIN"
