#!/usr/bin/env bash
# Runs Cairn's S3 conformance suite against an S3 endpoint that is already up:
# LocalStack by default (docker compose -f localstack/docker-compose.yml up -d --wait),
# or any S3-compatible server named by the same variables.
#
#   localstack/run-suite.sh                 # the whole S3 suite
#   localstack/run-suite.sh -t 'refs'       # extra arguments go to vitest
#   CAIRN_SUITE_QUICK=1 localstack/run-suite.sh   # a few cases: create-only put,
#                                                 # create-only ref swap, a race
#
# Environment (defaults suit the compose file):
#   CAIRN_TEST_S3_ENDPOINT          http://127.0.0.1:4566
#   CAIRN_TEST_S3_BUCKET            cairn-test (created if missing)
#   CAIRN_TEST_S3_REGION            us-east-1
#   CAIRN_TEST_S3_FORCE_PATH_STYLE  true
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   test / test (LocalStack accepts any)
#   CAIRN_SUITE_FILES               test/backends/s3 (vitest file filters, space-separated)
#   CAIRN_SUITE_QUICK               1 to run only the quick subset
# The suite writes under a fresh prefix (cairn-test/<date>-<random>/) and
# deletes it at the end; it never touches other keys in the bucket.
set -euo pipefail
cd "$(dirname "$0")/.."

export CAIRN_TEST_S3_ENDPOINT="${CAIRN_TEST_S3_ENDPOINT:-http://127.0.0.1:4566}"
export CAIRN_TEST_S3_BUCKET="${CAIRN_TEST_S3_BUCKET:-cairn-test}"
export CAIRN_TEST_S3_REGION="${CAIRN_TEST_S3_REGION:-us-east-1}"
export CAIRN_TEST_S3_FORCE_PATH_STYLE="${CAIRN_TEST_S3_FORCE_PATH_STYLE:-true}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
# Only the endpoint above: the test harness must not start its own MinIO or moto.
export CAIRN_TEST_S3_SERVERS=external
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

# Cases chosen to reach every conditional-write path quickly: a create-only
# PUT of content, a create-only ref write, and a race on one ref.
QUICK_CASES='put then get returns the same bytes|compareAndSwap from null creates only if absent|32 concurrent create-only swaps'

# vitest file filters: "test/backends/s3" selects s3.test.ts, s3-*.test.ts and s3/.
read -r -a files <<<"${CAIRN_SUITE_FILES:-test/backends/s3}"
for file in "${files[@]}"; do
  if ! compgen -G "${file}*" >/dev/null; then
    echo "run-suite: no test file matches $file (set CAIRN_SUITE_FILES to the S3 test files)" >&2
    exit 2
  fi
done

# Fail fast, and say what to do, when nothing listens: otherwise every case
# would time out one by one. Any HTTP answer (even 403) means a server is up.
if ! node -e '
  fetch(process.argv[1], { signal: AbortSignal.timeout(5000) })
    .then(() => process.exit(0), () => process.exit(1));
' "$CAIRN_TEST_S3_ENDPOINT"; then
  echo "run-suite: no S3 endpoint answers at $CAIRN_TEST_S3_ENDPOINT." >&2
  echo "run-suite: start LocalStack with 'docker compose -f localstack/docker-compose.yml up -d --wait'," >&2
  echo "run-suite: or set CAIRN_TEST_S3_ENDPOINT to a running S3-compatible server." >&2
  exit 2
fi

args=()
if [ "${CAIRN_SUITE_QUICK:-}" = "1" ]; then
  args+=(-t "$QUICK_CASES")
fi

echo "run-suite: ${files[*]} against $CAIRN_TEST_S3_ENDPOINT (bucket $CAIRN_TEST_S3_BUCKET, region $CAIRN_TEST_S3_REGION)"
# ${args[@]+...}: an empty array is "unbound" under set -u in the bash 3.2 of macOS.
exec npx vitest run "${files[@]}" ${args[@]+"${args[@]}"} "$@"
