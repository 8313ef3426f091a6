#!/usr/bin/env bash
# The test pipeline `make test` and CI run. Usage: tests/run.sh [all|lint|unit|fuzz|e2e]...
# Installs the pinned tools, starts the emulators once, runs every suite and
# stops the emulators on exit, also on failure or interrupt.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
# Fuzzing in `make test` is bounded by executions, not wall time: a time
# bound makes the engine fail with "context deadline exceeded" when a busy
# machine stalls a worker, although the target found nothing. N executions
# are the same work on any machine. `make fuzz FUZZTIME=5m` fuzzes longer.
FUZZTIME=${FUZZTIME:-4000x}
started=$SECONDS
emulators_up=

step() { printf '\n==> %s (%ds)\n' "$*" $((SECONDS - started)) >&2; }

cleanup() {
  local rc=$?
  if [[ -n $emulators_up ]]; then
    step "stopping emulators"
    bash tests/emulators.sh stop || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# install_tools [tool...]: installs the pinned tools (default: all) and puts
# their bin dir first on PATH.
install_tools() {
  step "installing tools"
  local out
  out=$(tests/tools/install.sh "$@")
  BERTH_TOOLS_BIN=$(tail -n1 <<<"$out")
  export BERTH_TOOLS_BIN
  export PATH=$BERTH_TOOLS_BIN:$PATH
}

start_emulators() {
  [[ -n $emulators_up ]] && return 0
  if [[ -f tests/emulators.sh ]]; then
    step "starting emulators"
    emulators_up=1
    bash tests/emulators.sh start
    # `env` prints export lines naming the endpoints, for
    # internal/testenv and tests/harness.
    local out line
    out=$(bash tests/emulators.sh env)
    while IFS= read -r line; do
      line=${line#export }
      if [[ $line =~ ^(BERTH_TEST_[A-Z0-9_]+)=(.*)$ ]]; then
        export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
      fi
    done <<<"$out"
  fi
}

# unit_packages lists the module's packages except the end-to-end suites.
unit_packages() { "$GO" list ./... | grep -v '/tests/'; }
e2e_packages() { "$GO" list ./tests/... 2>/dev/null | grep -v '/tests/harness$' || true; }

lint() {
  step "gofmt"
  local dirs=() d
  for d in cmd pkg internal functions tests infra/berth infra/main.go; do [[ -e $d ]] && dirs+=("$d"); done
  local bad
  bad=$(gofmt -l "${dirs[@]}")
  if [[ -n $bad ]]; then
    printf 'gofmt: these files need formatting:\n%s\n' "$bad" >&2
    return 1
  fi
  step "go vet"
  "$GO" vet ./...
  step "staticcheck"
  staticcheck ./...
  local mod
  for mod in $(nested_modules); do
    step "go vet + staticcheck $mod"
    (cd "$mod" && "$GO" vet ./... && staticcheck ./...)
  done
}

unit() {
  step "go test (unit)"
  # shellcheck disable=SC2046
  "$GO" test -count=1 $(unit_packages)
}

fuzz() {
  step "fuzz (${FUZZTIME} each)"
  local pkg dir names name
  # Candidate packages are those with a Fuzz function in a test file; go test
  # -list then says which targets exist.
  for dir in $(grep -rl --include='*_test.go' '^func Fuzz' cmd pkg functions 2>/dev/null | xargs -r -n1 dirname | sort -u); do
    pkg=./$dir
    names=$("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
    for name in $names; do
      step "fuzz $pkg $name"
      "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -parallel=2 "$pkg"
    done
  done
}

infra() {
  if [[ -f mk/infra.mk ]]; then
    step "infra tests"
    make --no-print-directory infra-test
  fi
}

e2e() {
  local pkgs
  pkgs=$(e2e_packages)
  [[ -z $pkgs ]] && return 0
  step "end-to-end suites"
  # shellcheck disable=SC2086
  "$GO" test -count=1 -timeout 20m $pkgs
  # Nested modules: suites whose dependencies stay out of the registry's
  # module graph (containerd's pusher as a library).
  local mod
  for mod in $(nested_modules); do
    step "end-to-end suite $mod"
    (cd "$mod" && "$GO" test -count=1 -timeout 20m ./...)
  done
}

nested_modules() { find tests -mindepth 2 -maxdepth 2 -name go.mod -printf '%h\n' | sort; }

modes=("$@")
((${#modes[@]})) || modes=(all)
for m in "${modes[@]}"; do
  case $m in
    all) install_tools; lint; start_emulators; unit; fuzz; infra; e2e ;;
    lint) install_tools staticcheck; lint ;;
    unit) install_tools; start_emulators; unit ;;
    fuzz) fuzz ;;
    e2e) install_tools; start_emulators; e2e ;;
    *) echo "tests/run.sh: unknown mode $m" >&2; exit 2 ;;
  esac
done
step "all passed"
