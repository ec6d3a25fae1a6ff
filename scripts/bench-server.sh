#!/usr/bin/env bash
# A benchmark of `idp bench` that drives a running server: starts the release server on a
# fresh store, runs the benchmark against it with the bootstrap admin, stops the server.
#
#   sign-in: the raw argon2id verification rate at the server's parameters, whole password
#            sign-ins over HTTP (start, password, complete) against it, a step that hashes
#            nothing at 64 in flight, TOTP checks and code digests per second (issue #15);
#   access:  a role given to a group of --users members, Rego decisions over HTTP and in
#            process, SCIM filtered lists and `as_of` access reads (issue #16);
#   oidc:    `/authorize` to the code with a session and a consent, code redemptions,
#            refreshes with rotation, UserInfo (issue #17).
#
#   scripts/bench-server.sh sign-in                    # SQLite
#   scripts/bench-server.sh sign-in --postgres URL     # a scratch database idp_server_bench on URL's server
#   scripts/bench-server.sh access --binary PATH       # that idp binary instead of a release build
#   scripts/bench-server.sh sign-in --duration 20 --concurrency 16 --users 200
#
# The server's log is dropped with the scratch store unless SERVER_LOG names a file to keep it in.
# Needs curl and python3 (and psql for --postgres).
set -euo pipefail

bench="${1:-}"
case "$bench" in
    sign-in | access | oidc) shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-server: name sign-in, access or oidc first" >&2; exit 2 ;;
esac
duration=10
case "$bench" in
    access) concurrency=64; users=10000 ;;
    oidc) concurrency=64; users=0 ;;
    *) concurrency=16; users=200 ;;
esac
postgres=""
binary=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --postgres) postgres="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --users) users="$2"; shift 2 ;;
        --binary) binary="$(realpath "$2")"; shift 2 ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-server: unknown argument $1" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -n "$binary" ]]; then
    idp="$binary"
else
    cargo build --release --quiet -p api --bin idp
    idp="${CARGO_TARGET_DIR:-$root/target}/release/idp"
fi

work="$(mktemp -d -t idp-server-bench.XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export IDP_DATA_DIR="$work/data"
export IDP_LISTEN="127.0.0.1:$port"
export IDP_LOG="${IDP_LOG:-warn}" IDP_LOG_FORMAT=json
unset IDP_CONFIG IDP_EVENTSTORE_URL IDP_MASTER_KEY IDP_MASTER_KEY_FILE IDP_SMTP_URL
label="SQLite"
if [[ -n "$postgres" ]]; then
    psql "$postgres" -q -v ON_ERROR_STOP=1 \
        -c 'DROP DATABASE IF EXISTS idp_server_bench WITH (FORCE)' \
        -c 'CREATE DATABASE idp_server_bench' >/dev/null
    IDP_DATABASE_URL="$(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/idp_server_bench")))' "$postgres")"
    export IDP_DATABASE_URL
    label="PostgreSQL"
else
    unset IDP_DATABASE_URL
fi

json() {
    python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}

"$idp" serve >>"${SERVER_LOG:-$work/server.log}" 2>&1 &
server_pid=$!
for _ in $(seq 1 3000); do
    if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done

BENCH_CLIENT_SECRET="$(json client_secret <"$IDP_DATA_DIR/bootstrap.json")" \
"$idp" bench "$bench" --url "$base" \
    --client-id "$(json client_id <"$IDP_DATA_DIR/bootstrap.json")" \
    --organization-id "$(json organization_id <"$IDP_DATA_DIR/bootstrap.json")" \
    --users "$users" --concurrency "$concurrency" --duration "$duration" --label "$label"
