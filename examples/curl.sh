#!/usr/bin/env bash
# The IsoBox REST API with curl (7.76+ for --fail-with-body; no jq needed).
#
#   ISOBOX_URL=http://127.0.0.1:8000 ISOBOX_API_KEY=... bash examples/curl.sh
#
# Environment: ISOBOX_URL (default http://127.0.0.1:8000), ISOBOX_API_KEY (optional, sent in the
# ISOBOX_API_KEY_HEADER header, default X-API-Key, as the server's API_KEY_HEADER).
#
# Every call prints what the server answered. On an error status the script prints the error body
# ({"error": "...", "message": "..."}) and exits non-zero; a 429 (rate limited) is retried up to
# 3 times after the delay its Retry-After header asks for (curl --retry).
set -euo pipefail

url="${ISOBOX_URL:-http://127.0.0.1:8000}"
url="${url%/}"
auth=()
if [ -n "${ISOBOX_API_KEY:-}" ]; then
  auth=(-H "${ISOBOX_API_KEY_HEADER:-X-API-Key}: $ISOBOX_API_KEY")
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "error: $*" >&2
  exit 1
}

# api METHOD PATH [curl args...]: prints the answer's body. A 429 (rate limited) is retried up to
# 3 times after the delay its Retry-After header asks for (curl --retry; the body goes to a file
# first, which curl empties before a retry). On an error status it prints the server's error
# object ({"error": "...", "message": "..."}) to stderr and fails.
api() {
  local method=$1 path=$2
  shift 2
  if ! curl -sS --fail-with-body --retry 3 --max-time 60 -X "$method" "${auth[@]}" \
    -H 'Content-Type: application/json' -o "$tmp/body" "$@" "$url$path"; then
    echo "error: $method $path: $(cat "$tmp/body" 2>/dev/null)" >&2
    return 1
  fi
  cat "$tmp/body"
}

# A Python hello world that reads a name from stdin (JSON-escaped by hand).
code='import sys\nname = input()\nprint(f\"Hello, {name}!\")\nprint(\"bye\", file=sys.stderr)\n'
request() { printf '{"language": "python", "code": "%s", "stdin": "%s"}' "$code" "$1"; }

echo "== POST /api/v1/execute"
result=$(api POST /api/v1/execute -d "$(request world)") || exit 1
echo "$result"
grep -q '"status":"ok"' <<<"$result" || fail "the program did not end with status ok"

echo "== POST /api/v1/execute/stream (Server-Sent Events)"
# -N: no buffering, each event is printed as it arrives. --fail rather than --fail-with-body, so
# that a 429 that curl retries leaves nothing in the output.
curl -sS -N --fail --retry 3 --max-time 60 -X POST "${auth[@]}" \
  -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
  -d "$(request stream)" "$url/api/v1/execute/stream" | tee "$tmp/events" ||
  fail "the stream failed"
grep -q '^event: error' "$tmp/events" && fail "the stream ended with an error event"
grep -q '^event: result' "$tmp/events" || fail "the stream ended without a result event"

echo "== POST /api/v1/executions + GET /api/v1/executions/{id}"
submitted=$(api POST /api/v1/executions -d "$(request job)") || exit 1
echo "$submitted"
id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$submitted")
[ -n "$id" ] || fail "no job id in the answer"
for _ in $(seq 300); do
  job=$(api GET "/api/v1/executions/$id") || exit 1
  grep -q '"state":"done"' <<<"$job" && break
  sleep 0.2
done
echo "$job"
grep -q '"state":"done"' <<<"$job" || fail "job $id did not finish within 60 s"
grep -q '"status":"ok"' <<<"$job" || fail "the job did not end with status ok"

echo "== GET /api/v1/languages"
api GET /api/v1/languages
echo
