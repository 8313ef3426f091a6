#!/bin/bash
# Creates the bucket and table that `berth serve --backend aws` and the AWS
# driver tests use against LocalStack (the CDK deploy creates its own).
# Settings match the production ones in infra/berth (docs/deploy.md).
set -euo pipefail

bucket=${BERTH_LOCAL_BUCKET:-berth-local}
table=${BERTH_LOCAL_TABLE:-berth-local}

awslocal s3api create-bucket --bucket "$bucket"
awslocal s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
awslocal s3api put-bucket-lifecycle-configuration --bucket "$bucket" --lifecycle-configuration '{
  "Rules": [
    {"ID": "abort-incomplete-multipart", "Status": "Enabled", "Filter": {"Prefix": ""},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    {"ID": "expire-upload-staging", "Status": "Enabled", "Filter": {"Prefix": "uploads/"},
     "Expiration": {"Days": 1}}
  ]}'

awslocal dynamodb create-table --table-name "$table" \
  --attribute-definitions AttributeName=PK,AttributeType=S AttributeName=SK,AttributeType=S \
  --key-schema AttributeName=PK,KeyType=HASH AttributeName=SK,KeyType=RANGE \
  --billing-mode PAY_PER_REQUEST
awslocal dynamodb wait table-exists --table-name "$table"
awslocal dynamodb update-time-to-live --table-name "$table" \
  --time-to-live-specification Enabled=true,AttributeName=expires

echo "berth: bucket $bucket and table $table ready"
