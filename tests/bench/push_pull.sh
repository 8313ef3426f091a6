#!/usr/bin/env bash
# Push/pull benchmark: a 5 × 32 MiB image with crane against `berth serve`
# (embedded backend) and the distribution reference registry (v3.1.2,
# filesystem storage), same machine, same run, alternating, several
# repetitions. Prints each run, the medians and the ratio Berth/distribution.
#
# Usage: tests/bench/push_pull.sh  (REPS=5 LAYERS=5 LAYER_MIB=32 to change)
# `make bench` builds bin/berth first.
set -euo pipefail
cd "$(dirname "$0")/../.."

REPS=${REPS:-5}
LAYERS=${LAYERS:-5}
LAYER_MIB=${LAYER_MIB:-32}
BERTH=${BERTH_BIN:-bin/berth}

BIN=$(tests/tools/install.sh crane registry | tail -n1)
CRANE=$BIN/crane
REGISTRY=$BIN/registry
[[ -x $BERTH ]] || { echo "bench: $BERTH missing (make berth)" >&2; exit 1; }

WORK=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

free_port() {
  local p
  while :; do
    p=$(shuf -i 20000-60000 -n 1)
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

wait_ready() {
  local url=$1 i
  for i in $(seq 1 200); do
    curl -fsS -o /dev/null "$url/v2/" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: $url did not come up" >&2
  return 1
}

# mk_layout DIR: an OCI layout tagged "bench" holding a linux/amd64 image of
# LAYERS uncompressed tar layers, each one file of LAYER_MIB random MiB.
mk_layout() {
  local dir=$1 tmp i d size layers="" diffs=""
  tmp=$dir.src
  mkdir -p "$dir/blobs/sha256" "$tmp"
  for i in $(seq 1 "$LAYERS"); do
    head -c "$((LAYER_MIB << 20))" /dev/urandom > "$tmp/file$i"
    tar -cf "$tmp/layer$i.tar" -C "$tmp" "file$i"
    d=$(sha256sum "$tmp/layer$i.tar" | cut -d' ' -f1)
    size=$(stat -c %s "$tmp/layer$i.tar")
    mv "$tmp/layer$i.tar" "$dir/blobs/sha256/$d"
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$d\",\"size\":$size}"
    diffs+="${diffs:+,}\"sha256:$d\""
  done
  rm -rf "$tmp"
  local config manifest cd cs md ms
  config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diffs]},\"config\":{}}"
  cd=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1); cs=${#config}
  printf '%s' "$config" > "$dir/blobs/sha256/$cd"
  manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cd\",\"size\":$cs},\"layers\":[$layers]}"
  md=$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1); ms=${#manifest}
  printf '%s' "$manifest" > "$dir/blobs/sha256/$md"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' "$md" "$ms" > "$dir/index.json"
}

# Start both registries.
berth_port=$(free_port)
"$BERTH" serve --addr "127.0.0.1:$berth_port" --data "$WORK/berth-data" --log-level warn >"$WORK/berth.log" 2>&1 &
pids+=($!)
dist_port=$(free_port)
cat > "$WORK/distribution.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/distribution-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$dist_port
YAML
"$REGISTRY" serve "$WORK/distribution.yml" >"$WORK/distribution.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$berth_port"
wait_ready "http://127.0.0.1:$dist_port"

echo "bench: ${LAYERS} × ${LAYER_MIB} MiB image, crane $("$CRANE" version), $REPS repetitions, $(nproc) cores"
printf '%-13s %3s %9s %9s\n' registry rep push_s pull_s
declare -A push pull
for rep in $(seq 1 "$REPS"); do
  layout=$WORK/layout$rep
  mk_layout "$layout"
  # Alternate which registry goes first.
  order=(berth distribution)
  ((rep % 2 == 0)) && order=(distribution berth)
  for target in "${order[@]}"; do
    port=$berth_port
    [[ $target == distribution ]] && port=$dist_port
    ref=127.0.0.1:$port/bench/rep$rep:bench
    t0=$(now)
    "$CRANE" push --insecure "$layout" "$ref" >/dev/null 2>&1
    t1=$(now)
    "$CRANE" pull --insecure --format oci "$ref" "$WORK/pulled-$target" >/dev/null 2>&1
    t2=$(now)
    rm -rf "$WORK/pulled-$target"
    push[$target]+="$(elapsed "$t0" "$t1") "
    pull[$target]+="$(elapsed "$t1" "$t2") "
    printf '%-13s %3d %9s %9s\n' "$target" "$rep" "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")"
  done
  rm -rf "$layout"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
bp=$(median <<<"${push[berth]}"); bl=$(median <<<"${pull[berth]}")
dp=$(median <<<"${push[distribution]}"); dl=$(median <<<"${pull[distribution]}")
echo
printf '%-13s %9s %9s\n' median push_s pull_s
printf '%-13s %9s %9s\n' berth "$bp" "$bl"
printf '%-13s %9s %9s\n' distribution "$dp" "$dl"
awk -v bp="$bp" -v dp="$dp" -v bl="$bl" -v dl="$dl" \
  'BEGIN { printf "ratio berth/distribution: push %.2f, pull %.2f (below 1: Berth faster)\n", bp / dp, bl / dl }'
