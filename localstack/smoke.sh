#!/bin/sh
# Smoke test of a Berth stack deployed to LocalStack by `make localstack-test`:
# the registry answers the OCI base endpoint with the token challenge, and
# the bucket and table exist. Usage: smoke.sh OUTPUTS_JSON (cdk --outputs-file).
set -eu
outputs=$1
value() { node -e 'const o=Object.values(require(process.argv[1]))[0];const k=Object.keys(o).find(k=>k.includes(process.argv[2]));process.stdout.write(o[k]||"")' "$outputs" "$1"; }

url=$(value RegistryUrl)
bucket=$(value BucketName)
table=$(value TableName)
echo "registry $url, bucket $bucket, table $table"

aws s3api head-bucket --bucket "$bucket"
aws dynamodb describe-table --table-name "$table" --query 'Table.TableStatus' --output text

headers=$(mktemp)
status=$(curl -sk -o /dev/null -D "$headers" -w '%{http_code}' "$url/v2/")
if [ "$status" != 401 ] || ! grep -qi '^www-authenticate: Bearer realm=' "$headers"; then
  echo "GET $url/v2/: want 401 with a Bearer challenge, got $status:" >&2
  cat "$headers" >&2
  exit 1
fi
echo "ok: $url/v2/ answers 401 with a Bearer challenge"
