#!/usr/bin/env bash
# The checkers themselves must fail on broken inputs: each case feeds one a broken
# copy and expects a non-zero exit and the reason on its output.
set -uo pipefail
cd "$(dirname "$0")/../.."
py="${DEPLOY_PY:-python3}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failures=0
expect_fail() { # name, expected text, command...
  local name="$1" want="$2"; shift 2
  local out
  if out="$("$@" 2>&1)"; then
    echo "test_checks: FAIL: $name: the check passed"; failures=$((failures + 1))
  elif ! grep -qF -- "$want" <<<"$out"; then
    echo "test_checks: FAIL: $name: no \"$want\" in:"; echo "$out"; failures=$((failures + 1))
  else
    echo "test_checks: ok: $name"
  fi
}

sed 's/--locked --bins/--bins/' deploy/Dockerfile >"$scratch/Dockerfile.cmd"
expect_fail "Dockerfile build command differs from DOCKER_CARGO_BUILD" "DOCKER_CARGO_BUILD is" \
  env CHECK_DOCKERFILE="$scratch/Dockerfile.cmd" "$py" deploy/test/check_dockerfile.py
grep -v '^!benches' .dockerignore >"$scratch/dockerignore"
expect_fail "build context without benches/" "outside the build context" \
  env CHECK_DOCKERIGNORE="$scratch/dockerignore" "$py" deploy/test/check_dockerfile.py
sed 's/^USER .*/USER root/' deploy/Dockerfile >"$scratch/Dockerfile.root"
expect_fail "runtime as root" "non-root USER" \
  env CHECK_DOCKERFILE="$scratch/Dockerfile.root" "$py" deploy/test/check_dockerfile.py

if command -v systemd-analyze >/dev/null 2>&1; then
  sed 's/^ProtectSystem=strict/ProtectSystm=strict/' deploy/systemd/commitlogd.service >"$scratch/typo.service"
  expect_fail "unit with an unknown key" "printed warnings" env CHECK_UNIT="$scratch/typo.service" deploy/test/check_systemd.sh
  grep -vE '^(Protect|Private|Restrict|SystemCall|CapabilityBoundingSet|NoNewPrivileges|MemoryDeny|LockPersonality)' \
    deploy/systemd/commitlogd.service >"$scratch/soft.service"
  expect_fail "unit without hardening" "exposure above 2.0" env CHECK_UNIT="$scratch/soft.service" deploy/test/check_systemd.sh
else
  echo "test_checks: SKIP: unit cases (no systemd-analyze)"
fi
[ "$failures" = 0 ]
