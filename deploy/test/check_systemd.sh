#!/usr/bin/env bash
# Checks deploy/systemd offline:
#  1. `systemd-analyze verify` of commitlogd.service, with ExecStart pointed at a built
#     commitlogd (verify insists the binary exists). verify exits 0 even on unknown keys
#     or unparsable values (it only prints them), so ANY output is a failure.
#  2. `systemd-analyze security --offline` exposure must stay <= 2.0 ("OK"; the unit
#     scores 1.2): removing hardening fails the check.
#  3. The sysusers.d snippet creates the user in a scratch root.
#  4. The example env file: only KEY=value / comment lines, only COMMITLOGD_* keys.
# Skips (exit 0, saying why) where systemd-analyze is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
unit="${CHECK_UNIT:-deploy/systemd/commitlogd.service}"  # overridable for this script's own tests
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "check_systemd: SKIP: systemd-analyze not installed (Debian: apt-get install systemd)"
  exit 0
fi
bin="${COMMITLOGD_BIN:-}"
if [ -z "$bin" ]; then
  for candidate in target/debug/commitlogd target/release/commitlogd; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
fi
if [ -z "$bin" ]; then
  cargo build --quiet --bin commitlogd
  bin=target/debug/commitlogd
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
grep -q '^ExecStart=/usr/local/bin/commitlogd$' "$unit" ||
  { echo "check_systemd: FAIL: $unit must ExecStart=/usr/local/bin/commitlogd (the README installs it there)"; exit 1; }
sed "s|^ExecStart=/usr/local/bin/commitlogd\$|ExecStart=$bin|" "$unit" >"$scratch/commitlogd.service"

out="$(systemd-analyze verify "$scratch/commitlogd.service" 2>&1)" || {
  echo "check_systemd: FAIL: systemd-analyze verify exited non-zero:"; echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "check_systemd: FAIL: systemd-analyze verify printed warnings:"; echo "$out"; exit 1
fi
echo "check_systemd: systemd-analyze verify $unit: clean ($(systemd-analyze --version | head -1))"

if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  sec="$(systemd-analyze security --offline=yes --threshold=20 "$scratch/commitlogd.service" 2>&1)" || {
    echo "check_systemd: FAIL: exposure above 2.0; the hardening was weakened:"
    echo "$sec" | grep -E '✗|Overall'; exit 1; }
  echo "check_systemd: $(echo "$sec" | grep Overall | sed 's/→ *//')"
else
  echo "check_systemd: skipping the exposure score: this systemd-analyze has no --offline"
fi

if command -v systemd-sysusers >/dev/null 2>&1; then
  mkdir -p "$scratch/root/etc"
  systemd-sysusers --root="$scratch/root" - <deploy/systemd/commitlog.sysusers.conf >/dev/null 2>&1
  grep -q '^commitlog:x:[0-9]*:[0-9]*:[^:]*:/var/lib/commitlog:/usr/sbin/nologin$' "$scratch/root/etc/passwd" ||
    { echo "check_systemd: FAIL: the sysusers snippet did not create user commitlog"; exit 1; }
  echo "check_systemd: sysusers snippet creates user and group commitlog"
fi

bad="$(grep -nvE '^(#.*|[[:space:]]*|COMMITLOGD_[A-Z0-9_]+=[^[:space:]"'"'"'$]*)$' deploy/systemd/commitlogd.env || true)"
if [ -n "$bad" ]; then
  echo "check_systemd: FAIL: commitlogd.env lines must be comments or COMMITLOGD_X=value (no quotes, spaces or \$):"
  echo "$bad"; exit 1
fi
echo "check_systemd: commitlogd.env: $(grep -cE '^COMMITLOGD_' deploy/systemd/commitlogd.env) settings, all COMMITLOGD_*"
# Variables the built commitlogd does not know are ignored by it silently (clap only
# reads the ones it defines). Listed, not failed: the cluster/TLS/metrics flags land
# in other branches; once they are merged this list must be empty.
known="$("$bin" --help | grep -o 'env: COMMITLOGD_[A-Z0-9_]*' | sed 's/env: //' | sort -u)"
unknown="$(sed -nE 's/^#?(COMMITLOGD_[A-Z0-9_]+)=.*/\1/p' deploy/systemd/commitlogd.env | sort -u | comm -23 - <(echo "$known") | tr '\n' ' ')"
if [ -n "$unknown" ]; then
  echo "check_systemd: note: not (yet) flags of $bin: $unknown"
  if [ "${DEPLOY_CHECK_STRICT_ENV:-0}" = 1 ]; then echo "check_systemd: FAIL (DEPLOY_CHECK_STRICT_ENV=1)"; exit 1; fi
fi
