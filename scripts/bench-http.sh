#!/usr/bin/env bash
# HTTP benchmark of the client credentials grant and of introspection (issue #3), of
# consuming one hot registration token and of exchanging auth tokens (issue #4).
#
#   scripts/bench-http.sh                       # SQLite in a fresh temp dir
#   scripts/bench-http.sh --postgres URL        # a scratch database idp_http_bench on URL's server
#   scripts/bench-http.sh --duration 20 --concurrency 64
#   scripts/bench-http.sh --only consume,exchange   # some runs: token, introspect, consume, exchange
#   scripts/bench-http.sh --exchange-tokens 40000   # auth tokens consumed for the exchange run
#   scripts/bench-http.sh --binary PATH         # that idp binary instead of a release build
#   scripts/bench-http.sh --consume-user NAME   # consumers name a user (default: a device only)
#
# Builds idp in release, starts it on a fresh data dir, creates an organization and a
# confidential client_secret_basic client through the admin API, then drives
#   (a) POST /oauth/token      grant_type=client_credentials, HTTP Basic
#   (b) POST /oauth/introspect one grant's token, HTTP Basic
#   (c) POST /registration/consume one registration token of count 1,000,000
# with oha (cargo install oha --locked) over loopback, then
#   (d) `idp bench exchange`: consumes auth tokens (distinct instances), then trades each
#       once at /oauth/token (RFC 8693 token exchange), its own load loop since every
#       request needs a fresh auth token
# and prints requests/s, success rate, p50 and p99 per run. Afterwards it checks the log:
# at least one token.issued event per 200 response of run (a), exactly one
# registration_token.consumed event per 201 of (c) and (d), one auth_token.exchanged per
# successful exchange. Needs curl and python3 (and psql for
# --postgres). The scratch PostgreSQL database is left in place for inspection; the next
# run drops it.
set -euo pipefail

duration=20
concurrency=64
postgres=""
only=""
binary=""
exchange_tokens=30000
consume_user=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --postgres) postgres="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --exchange-tokens) exchange_tokens="$2"; shift 2 ;;
        --binary) binary="$(realpath "$2")"; shift 2 ;;
        --consume-user) consume_user="$2"; shift 2 ;;
        -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-http: unknown argument $1" >&2; exit 2 ;;
    esac
done

for tool in oha curl python3; do
    command -v "$tool" >/dev/null || { echo "bench-http: $tool is not installed" >&2; exit 2; }
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -n "$binary" ]]; then
    idp="$binary"
else
    cargo build --release --quiet -p api --bin idp
    idp="$root/target/release/idp"
fi
# wanted NAME: whether run NAME is one of --only's (all runs without it).
wanted() { [[ -z "$only" || ",$only," == *",$1,"* ]]; }

work="$(mktemp -d -t idp-http-bench.XXXXXX)"
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
export IDP_LOG="${IDP_LOG:-info}" IDP_LOG_FORMAT=json
unset IDP_CONFIG IDP_EVENTSTORE_URL IDP_MASTER_KEY IDP_MASTER_KEY_FILE
label="SQLite"
if [[ -n "$postgres" ]]; then
    psql "$postgres" -q -v ON_ERROR_STOP=1 \
        -c 'DROP DATABASE IF EXISTS idp_http_bench WITH (FORCE)' \
        -c 'CREATE DATABASE idp_http_bench' >/dev/null
    IDP_DATABASE_URL="$(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/idp_http_bench")))' "$postgres")"
    export IDP_DATABASE_URL
    label="PostgreSQL"
else
    unset IDP_DATABASE_URL
fi

"$idp" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS -o /dev/null "$base/readyz" || { echo "bench-http: the server is not ready" >&2; exit 1; }

# json FIELD: reads a JSON document on stdin and prints one (dotted) field.
json() {
    python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}
basic() { printf '%s:%s' "$1" "$2" | base64 -w0; }

admin_id="$(json client_id <"$IDP_DATA_DIR/bootstrap.json")"
admin_secret="$(json client_secret <"$IDP_DATA_DIR/bootstrap.json")"
admin_token="$(curl -fsS -u "$admin_id:$admin_secret" -d grant_type=client_credentials -d scope=idp:admin \
    "$base/oauth/token" | json access_token)"
admin() { curl -fsS -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' "$@"; }

org="$(admin -d '{"name":"HTTP bench"}' "$base/admin/organizations" | json id)"
client="$(admin -d "{\"organization_id\":\"$org\",\"client_type\":\"confidential\",\"name\":\"bench\",
    \"grant_types\":[\"client_credentials\"],\"scopes\":[\"bench:read\"],
    \"token_endpoint_auth_method\":\"client_secret_basic\"}" \
    "$base/admin/clients" | json client_id)"
secret="$(admin -d '{"description":"bench"}' "$base/admin/clients/$client/secrets" | json secret)"
auth="Authorization: Basic $(basic "$client" "$secret")"
token="$(curl -fsS -H "$auth" -d grant_type=client_credentials "$base/oauth/token" | json access_token)"
active="$(curl -fsS -H "$auth" --data-urlencode "token=$token" "$base/oauth/introspect" | json active)"
[[ "$active" == "True" ]] || { echo "bench-http: the bench token does not introspect as active" >&2; exit 1; }

# run NAME PATH BODY [HEADER [CONTENT-TYPE]]: drives one endpoint, keeps oha's JSON
# report in $work/NAME.json.
run() {
    oha --no-tui --output-format json --wait-ongoing-requests-after-deadline \
        -z "${duration}s" -c "$concurrency" -m POST \
        -H "${4:-$auth}" -T "${5:-application/x-www-form-urlencoded}" -d "$3" \
        "$base$2" >"$work/$1.json"
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "bench-http: the server exited during the $1 run; its last log lines:" >&2
        tail -5 "$work/server.log" >&2
        exit 1
    fi
}
# report NAME: one line from an oha JSON report.
report() {
    python3 - "$work/$1.json" "$1" "$label" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f"{sys.argv[3]:<10} {sys.argv[2]:<10} {s['requestsPerSec']:>10.0f} req/s  "
      f"success {100 * s['successRate']:6.2f}%  p50 {1000 * p['p50']:7.2f} ms  "
      f"p99 {1000 * p['p99']:7.2f} ms  status {json.dumps(codes, sort_keys=True)}")
EOF
}
ok_count() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["statusCodeDistribution"].get(sys.argv[2], 0))' "$1" "${2:-200}"; }

setup_lines="$(wc -l <"$work/server.log")"
echo "idp HTTP benchmark: $label, ${duration}s per run, concurrency $concurrency, $(nproc) cores (oha included)"
if wanted token; then
    run token /oauth/token grant_type=client_credentials
    report token
fi
if wanted introspect; then
    run introspect /oauth/introspect "token=$token"
    report introspect
fi

# Issue #4: one hot registration token (count 1,000,000) consumed by 64 instances at once.
app="$(admin -d "{\"organization_id\":\"$org\",\"client_type\":\"public\",\"name\":\"bench app\",
    \"grant_types\":[\"urn:ietf:params:oauth:grant-type:token-exchange\",\"refresh_token\"],
    \"scopes\":[\"app\"],\"token_endpoint_auth_method\":\"none\"}" \
    "$base/admin/clients" | json client_id)"
expires="$(python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))')"
regtoken="$(admin -d "{\"client_id\":\"$app\",\"description\":\"bench\",\"count\":1000000,\"expires_at\":\"$expires\"}" \
    "$base/admin/registration-tokens" | json token)"
if wanted consume; then
    consume_body='{"instance_id":"bench-instance","device_name":"bench","app_version":"1.0"}'
    if [[ -n "$consume_user" ]]; then
        consume_body="{\"instance_id\":\"bench-instance\",\"device_name\":\"bench\",\"user_name\":\"$consume_user\",\"app_version\":\"1.0\"}"
    fi
    run consume /registration/consume "$consume_body" \
        "Authorization: Bearer $regtoken" application/json
    report consume
fi

if wanted exchange; then
    BENCH_REGISTRATION_TOKEN="$regtoken" "$idp" bench exchange --url "$base" --client-id "$app" \
        --tokens "$exchange_tokens" --concurrency "$concurrency" --duration "$duration" \
        --label "$label" | tee "$work/exchange.txt"
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "bench-http: the server exited during the exchange run; its last log lines:" >&2
        tail -5 "$work/server.log" >&2
        exit 1
    fi
fi

kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=""

if wanted token; then
    grants_ok="$(ok_count "$work/token.json")"
    issued="$("$idp" replay all --category tokens --type-prefix token.issued 2>/dev/null | wc -l)"
    echo "token.issued events in the log: $issued; 200 responses to grants: $grants_ok"
    if (( issued < grants_ok )); then
        echo "bench-http: FAIL: fewer token.issued events than granted tokens" >&2
        exit 1
    fi
fi
# bench_count PHASE STATUS: how many responses with STATUS `idp bench exchange` saw.
bench_count() {
    python3 - "$work/exchange.txt" "$1" "$2" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    if line.split()[1:2] == [sys.argv[2]]:
        print(json.loads(line.split("status ", 1)[1]).get(sys.argv[3], 0))
EOF
}
if wanted consume || wanted exchange; then
    consumed_ok=0
    if wanted consume; then consumed_ok="$(ok_count "$work/consume.json" 201)"; fi
    if wanted exchange; then consumed_ok=$((consumed_ok + $(bench_count 'consume*' 201))); fi
    consumed="$("$idp" replay all --category regtoken --type-prefix registration_token.consumed 2>/dev/null | wc -l)"
    echo "registration_token.consumed events in the log: $consumed; 201 responses to consumers: $consumed_ok"
    if (( consumed != consumed_ok )); then
        echo "bench-http: FAIL: the consumptions in the log are not the auth tokens handed out" >&2
        exit 1
    fi
fi
if wanted exchange; then
    exchanged_ok="$(bench_count exchange 200)"
    exchanged="$("$idp" replay all --category authtoken --type-prefix auth_token.exchanged 2>/dev/null | wc -l)"
    echo "auth_token.exchanged events in the log: $exchanged; 200 responses to exchanges: $exchanged_ok"
    if (( exchanged != exchanged_ok )); then
        echo "bench-http: FAIL: the exchanges in the log are not the grants answered" >&2
        exit 1
    fi
fi
# Errors logged during the runs (not while /readyz still answered 503 at start).
errors="$(tail -n +"$((setup_lines + 1))" "$work/server.log" | grep -c '"level":"ERROR"' || true)"
if (( errors > 0 )); then
    echo "bench-http: the server logged $errors errors during the runs, e.g.:" >&2
    tail -n +"$((setup_lines + 1))" "$work/server.log" | grep '"level":"ERROR"' | head -3 >&2
fi
