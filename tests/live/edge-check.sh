#!/usr/bin/env bash
# Live check of the edge upload path against a deployed Berth (CDK, EdgeUploads on).
# Settles what no emulator can (docs/deploy.md, "What only AWS can confirm"):
#   1. a large layer (default 1 GiB) pushed by oras through CloudFront → S3, pulled back intact;
#   2. a slow single PUT (default 200 MiB at 1 MiB/s, about 200 s) through CloudFront: does
#      the origin timeout cut long uploads?
#   3. a PUT whose bytes do not match its digest is refused by S3 (400 BadDigest) and never
#      becomes visible;
#   4. an upload PATCH too big for Lambda gets the OCI 413 (SIZE_INVALID, naming `berth push`):
#      with a Content-Length from the CloudFront Function, chunked (as podman and skopeo send
#      it) from API Gateway's own 413 rewritten by the Lambda@Edge function (docs/lambda.md,
#      "The oversize 413 at the edge"). Settles whether origin response runs on API Gateway's
#      413 and whether that 413 lacks Docker-Distribution-API-Version.
# Usage: tests/live/edge-check.sh REGISTRY-HOST [REPO]
#   env: SIZE_MIB (1024), SLOW_MIB (200), SLOW_RATE (1M), OVERSIZE_MIB (8), KEEP=1 keeps the
#   temp dir.
# Needs: oras, curl, jq, sha256sum, and docker-credential-berth on PATH with AWS credentials
# (or BERTH_USER/BERTH_PASSWORD for an OIDC login). Writes only to REPO (default live-check/edge).
set -euo pipefail

host=${1:?usage: tests/live/edge-check.sh REGISTRY-HOST [REPO]}
repo=${2:-live-check/edge}
size_mib=${SIZE_MIB:-1024}
slow_mib=${SLOW_MIB:-200}
slow_rate=${SLOW_RATE:-1M}
for t in oras curl jq sha256sum; do
  command -v "$t" >/dev/null || { echo "edge-check: $t is not on PATH" >&2; exit 2; }
done
work=$(mktemp -d)
[[ -n ${KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
results=()
report() { results+=("$1"); printf '%s\n' "$1"; }

credentials() {
  if [[ -n ${BERTH_USER:-} ]]; then
    printf '%s\n%s\n' "$BERTH_USER" "$BERTH_PASSWORD"
    return
  fi
  command -v docker-credential-berth >/dev/null || { echo "edge-check: docker-credential-berth not on PATH" >&2; exit 2; }
  docker-credential-berth get <<<"$host" | jq -r '.Username, .Secret'
}

token() {
  local creds user pass
  creds=$(credentials)
  user=$(sed -n 1p <<<"$creds")
  pass=$(sed -n 2p <<<"$creds")
  curl -fsS -u "$user:$pass" "https://$host/token?service=$host&scope=repository:$repo:push,pull" | jq -r '.token // .access_token'
}

# 1. A large layer with oras (POST, then one PUT through the edge).
echo "== 1. oras push of a ${size_mib} MiB layer"
head -c "$((size_mib << 20))" /dev/urandom >"$work/layer.bin"
want=$(sha256sum "$work/layer.bin" | cut -d' ' -f1)
start=$SECONDS
if (cd "$work" && oras push "$host/$repo:big" layer.bin:application/octet-stream >"$work/push.log" 2>&1); then
  secs=$((SECONDS - start))
  report "push ${size_mib} MiB: ok in ${secs}s ($((size_mib / (secs > 0 ? secs : 1))) MiB/s)"
  mkdir -p "$work/pull"
  if (cd "$work/pull" && oras pull "$host/$repo:big" >/dev/null 2>&1) &&
    [[ $(sha256sum "$work/pull/layer.bin" | cut -d' ' -f1) == "$want" ]]; then
    report "pull ${size_mib} MiB: ok, byte-identical"
  else
    report "pull ${size_mib} MiB: FAILED"
  fi
else
  report "push ${size_mib} MiB: FAILED after $((SECONDS - start))s (see below)"
  tail -20 "$work/push.log"
fi

tok=$(token)
auth=(-H "Authorization: Bearer $tok")

# location starts an upload session and prints its absolute Location.
location() {
  local loc
  loc=$(curl -fsS -o /dev/null -D - -X POST "${auth[@]}" "https://$host/v2/$repo/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  [[ $loc == /* ]] && loc="https://$host$loc"
  printf '%s' "$loc"
}

# 2. A slow single PUT: does CloudFront keep a long upload open?
echo "== 2. one PUT of ${slow_mib} MiB at ${slow_rate}/s"
head -c "$((slow_mib << 20))" /dev/urandom >"$work/slow.bin"
d=sha256:$(sha256sum "$work/slow.bin" | cut -d' ' -f1)
loc=$(location)
[[ $loc == *"/_upload/"* ]] || report "note: the API answered a non-edge Location ($loc): is EdgeUploads on and has the cleanup function run once?"
start=$SECONDS
code=$(curl -sS -o "$work/slow.out" -w '%{http_code}' -X PUT --limit-rate "$slow_rate" \
  -H 'Content-Type: application/octet-stream' --data-binary @"$work/slow.bin" "$loc?digest=$d" || true)
report "slow PUT ${slow_mib} MiB: HTTP $code after $((SECONDS - start))s$([[ $code == 201 ]] && echo ' (long uploads pass)' || echo ' (CUT: raise the S3 origin timeout or use berth push)')"

# 3. Wrong bytes for the digest: S3 must refuse them.
echo "== 3. tampered PUT"
head -c $((8 << 20)) /dev/urandom >"$work/a.bin"
head -c $((8 << 20)) /dev/urandom >"$work/b.bin"
d=sha256:$(sha256sum "$work/a.bin" | cut -d' ' -f1)
loc=$(location)
code=$(curl -sS -o "$work/tamper.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
  --data-binary @"$work/b.bin" "$loc?digest=$d" || true)
head_code=$(curl -sS -o /dev/null -w '%{http_code}' -I "${auth[@]}" "https://$host/v2/$repo/blobs/$d" || true)
if [[ $code == 400 && $head_code == 404 ]]; then
  report "tampered PUT: refused (HTTP $code, $(grep -o 'BadDigest' "$work/tamper.out" | head -1)), blob not visible"
else
  report "tampered PUT: UNEXPECTED (PUT HTTP $code, HEAD HTTP $head_code): the checksum header may not reach S3"
fi

# 4. Over the Lambda limit: the OCI 413 either way a client sends the PATCH.
echo "== 4. ${OVERSIZE_MIB:-8} MiB PATCH, with a Content-Length and chunked"
head -c "$((${OVERSIZE_MIB:-8} << 20))" /dev/urandom >"$work/over.bin"
for shape in length chunked; do
  loc=$(location)
  extra=()
  [[ $shape == chunked ]] && extra=(-H 'Transfer-Encoding: chunked')
  code=$(curl -sS -o "$work/over-$shape.out" -D "$work/over-$shape.hdr" -w '%{http_code}' -X PATCH "${auth[@]}" \
    -H 'Content-Type: application/octet-stream' "${extra[@]}" --data-binary @"$work/over.bin" "$loc" || true)
  oci=$(jq -r '.errors[0].code // empty' "$work/over-$shape.out" 2>/dev/null || true)
  if [[ $code == 413 && $oci == SIZE_INVALID ]] && grep -q 'berth push' "$work/over-$shape.out"; then
    report "oversize PATCH ($shape): OCI 413 SIZE_INVALID naming berth push"
  else
    report "oversize PATCH ($shape): UNEXPECTED HTTP $code, body $(head -c 300 "$work/over-$shape.out")$([[ $shape == chunked ]] && echo ' (is the Lambda@Edge function deployed: a stack with a region, cdk deploy --all?)')"
  fi
  # What answered, for the record: the registry sets Docker-Distribution-API-Version, API
  # Gateway does not; X-Cache names CloudFront's part (FunctionGeneratedResponse: the function).
  echo "   headers: $(tr -d '\r' <"$work/over-$shape.hdr" | grep -iE '^(x-cache|docker-distribution-api-version|apigw-requestid|content-type):' | tr '\n' ' ')"
done

echo
echo "== summary for $host"
printf '  %s\n' "${results[@]}"
