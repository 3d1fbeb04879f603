#!/usr/bin/env bash
# LocalStack init hook (runs inside the container when S3 is ready): creates
# the bucket the conformance suite writes to. Idempotent, so a container
# restart with persistence on does not fail the hook.
set -euo pipefail
bucket="${CAIRN_BUCKET:-cairn-test}"
region="${AWS_DEFAULT_REGION:-us-east-1}"
if awslocal s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
  echo "cairn: bucket $bucket already exists"
  exit 0
fi
if [ "$region" = "us-east-1" ]; then
  awslocal s3api create-bucket --bucket "$bucket" >/dev/null
else
  awslocal s3api create-bucket --bucket "$bucket" \
    --create-bucket-configuration "LocationConstraint=$region" >/dev/null
fi
echo "cairn: created bucket $bucket in $region"
