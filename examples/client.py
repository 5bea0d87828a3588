#!/usr/bin/env python3
"""A tiny IsoBox REST client: Python 3 standard library only (urllib, json).

    ISOBOX_URL=http://127.0.0.1:8000 ISOBOX_API_KEY=... python3 examples/client.py

Environment: ISOBOX_URL (default http://127.0.0.1:8000), ISOBOX_API_KEY (optional, sent in the
ISOBOX_API_KEY_HEADER header, default X-API-Key, as the server's API_KEY_HEADER).

It runs a hello world with stdin (POST /api/v1/execute), streams one (POST /api/v1/execute/stream,
Server-Sent Events), submits an async job and polls it (POST /api/v1/executions, GET
/api/v1/executions/{id}) and lists the languages. Exits 1 on any failure. A 429 is waited out as
its Retry-After header says (at most MAX_RETRIES times); every other error prints the server's
`{"error", "message"}` and exits.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

HELLO = 'import sys\nname = input()\nprint(f"Hello, {name}!")\nprint("bye", file=sys.stderr)\n'


class IsoBoxError(Exception):
    """An error answer of the API: HTTP status, error kind, human message, Retry-After."""

    def __init__(self, status, kind, message, retry_after=None):
        prefix = f"HTTP {status} " if status else ""
        super().__init__(f"{prefix}{kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


class IsoBox:
    MAX_RETRIES = 3

    def __init__(self, url=None, api_key=None, header=None, timeout=60.0):
        self.url = (url or os.environ.get("ISOBOX_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("ISOBOX_API_KEY")
        self.header = header or os.environ.get("ISOBOX_API_KEY_HEADER") or "X-API-Key"
        self.timeout = timeout

    # --- transport -------------------------------------------------------------------------

    def _open(self, method, path, body=None, accept="application/json"):
        """Sends one request; answers the open response (2xx) or raises IsoBoxError.
        429 (and 503 with Retry-After) are retried after the delay the server asks for."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(self.MAX_RETRIES + 1):
            req = urllib.request.Request(self.url + path, data=data, method=method)
            req.add_header("Accept", accept)
            if data is not None:
                req.add_header("Content-Type", "application/json")
            if self.api_key:
                req.add_header(self.header, self.api_key)
            try:
                return urllib.request.urlopen(req, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                err = self._error(e)
                retryable = e.code == 429 or (e.code == 503 and err.retry_after is not None)
                if retryable and attempt < self.MAX_RETRIES:
                    wait = min(err.retry_after or 1, 60)
                    print(f"[{e.code} {err.kind}] retrying in {wait} s (Retry-After)",
                          file=sys.stderr)
                    time.sleep(wait)
                    continue
                raise err from None
            except urllib.error.URLError as e:
                raise IsoBoxError(0, "connection_failed", f"{self.url}: {e.reason}") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _error(e):
        raw = e.read().decode("utf-8", "replace")
        try:
            body = json.loads(raw)
            kind, message = body["error"], body["message"]
        except (ValueError, KeyError, TypeError):
            kind, message = "http_error", raw.strip() or e.reason
        retry_after = e.headers.get("Retry-After")
        try:
            retry_after = int(retry_after) if retry_after is not None else None
        except ValueError:
            retry_after = None
        return IsoBoxError(e.code, kind, message, retry_after)

    def _json(self, method, path, body=None):
        with self._open(method, path, body) as resp:
            return json.load(resp)

    # --- API -------------------------------------------------------------------------------

    def execute(self, language, code, stdin=None, **extra):
        """POST /api/v1/execute: the result object."""
        return self._json("POST", "/api/v1/execute", _request(language, code, stdin, extra))

    def stream(self, language, code, stdin=None, **extra):
        """POST /api/v1/execute/stream: yields (event, data) as they arrive, where event is
        `stdout` / `stderr` (data: the text) or the final `result` (the result object). An
        `error` event raises IsoBoxError."""
        body = _request(language, code, stdin, extra)
        with self._open("POST", "/api/v1/execute/stream", body, "text/event-stream") as resp:
            event, data = "message", []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if data:
                        payload = json.loads("\n".join(data))
                        if event == "error":
                            raise IsoBoxError(200, payload["error"], payload["message"])
                        yield event, payload
                        if event == "result":
                            return
                    event, data = "message", []
                elif line.startswith(":"):
                    continue  # keep-alive comment
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
        raise IsoBoxError(0, "stream_ended", "the stream ended without a result")

    def submit(self, language, code, stdin=None, **extra):
        """POST /api/v1/executions: the job id."""
        return self._json("POST", "/api/v1/executions", _request(language, code, stdin, extra))["id"]

    def job(self, job_id):
        """GET /api/v1/executions/{id}: {"id", "state", ...} (a done job carries the result)."""
        return self._json("GET", f"/api/v1/executions/{job_id}")

    def wait(self, job_id, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.get("state") == "done":
                return job
            if time.monotonic() > deadline:
                raise IsoBoxError(0, "timeout", f"job {job_id} still {job.get('state')}")
            time.sleep(0.2)

    def languages(self):
        return self._json("GET", "/api/v1/languages")


def _request(language, code, stdin, extra):
    body = {"language": language, "code": code, **extra}
    if stdin is not None:
        body["stdin"] = stdin
    return body


def show(result):
    print(f"status: {result['status']} (exit code {result.get('exit_code')})")
    for name in ("stdout", "stderr"):
        for line in (result.get(name) or "").splitlines():
            print(f"{name}: {line}")


def main():
    box = IsoBox()
    print(f"IsoBox at {box.url}")

    print("== POST /api/v1/execute")
    result = box.execute("python", HELLO, stdin="world")
    show(result)
    ok = result["status"] == "ok"

    print("== POST /api/v1/execute/stream")
    for event, data in box.stream("python", HELLO, stdin="stream"):
        if event == "result":
            print(f"[result] status: {data['status']}")
            ok = ok and data["status"] == "ok"
        else:
            print(f"[{event}] {data.rstrip()}")

    print("== POST /api/v1/executions + GET /api/v1/executions/{id}")
    job_id = box.submit("python", HELLO, stdin="job")
    job = box.wait(job_id)
    print(f"job {job_id}: {job['state']}")
    show(job)
    ok = ok and job["status"] == "ok"

    print("== GET /api/v1/languages")
    print("languages: " + ", ".join(f"{l['name']} {l['version']}" for l in box.languages()))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except IsoBoxError as e:
        if e.status == 429:
            print(f"error: rate limited ({e.kind}): {e.message}; retry after "
                  f"{e.retry_after or '?'} s", file=sys.stderr)
        else:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
