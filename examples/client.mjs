#!/usr/bin/env node
// A tiny IsoBox REST client with Node's built-in fetch (Node 18+), no packages.
//
//   ISOBOX_URL=http://127.0.0.1:8000 ISOBOX_API_KEY=... node examples/client.mjs
//
// Environment: ISOBOX_URL (default http://127.0.0.1:8000), ISOBOX_API_KEY (optional, sent in the
// ISOBOX_API_KEY_HEADER header, default X-API-Key, as the server's API_KEY_HEADER).
//
// It runs a hello world with stdin (POST /api/v1/execute), streams one (POST
// /api/v1/execute/stream, Server-Sent Events read from response.body), submits an async job and
// polls it (POST /api/v1/executions, GET /api/v1/executions/{id}) and lists the languages. Exits 1
// on any failure. A 429 is waited out as its Retry-After header says (at most MAX_RETRIES times);
// every other error prints the server's {"error", "message"} and exits.

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const HELLO =
  'import sys\nname = input()\nprint(f"Hello, {name}!")\nprint("bye", file=sys.stderr)\n';

export class IsoBoxError extends Error {
  constructor(status, kind, message, retryAfter = null) {
    super(`${status ? `HTTP ${status} ` : ''}${kind}: ${message}`);
    this.status = status;
    this.kind = kind;
    this.detail = message;
    this.retryAfter = retryAfter;
  }
}

export class IsoBox {
  static MAX_RETRIES = 3;

  constructor({ url, apiKey, header } = {}) {
    this.url = (url ?? process.env.ISOBOX_URL ?? 'http://127.0.0.1:8000').replace(/\/+$/, '');
    this.apiKey = apiKey ?? process.env.ISOBOX_API_KEY ?? '';
    this.header = header ?? process.env.ISOBOX_API_KEY_HEADER ?? 'X-API-Key';
  }

  // Sends one request; answers the response (2xx) or throws IsoBoxError. 429 (and 503 with
  // Retry-After) are retried after the delay the server asks for.
  async #fetch(method, path, body, accept = 'application/json') {
    const headers = { Accept: accept };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (this.apiKey) headers[this.header] = this.apiKey;
    for (let attempt = 0; ; attempt++) {
      let resp;
      try {
        resp = await fetch(this.url + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        throw new IsoBoxError(0, 'connection_failed', `${this.url}: ${e.cause?.message ?? e.message}`);
      }
      if (resp.ok) return resp;
      const err = await IsoBox.#error(resp);
      const retryable = resp.status === 429 || (resp.status === 503 && err.retryAfter !== null);
      if (!retryable || attempt >= IsoBox.MAX_RETRIES) throw err;
      const wait = Math.min(err.retryAfter ?? 1, 60);
      console.error(`[${resp.status} ${err.kind}] retrying in ${wait} s (Retry-After)`);
      await new Promise((r) => setTimeout(r, wait * 1000));
    }
  }

  static async #error(resp) {
    const raw = await resp.text();
    let kind = 'http_error';
    let message = raw.trim() || resp.statusText;
    try {
      const body = JSON.parse(raw);
      if (typeof body.error === 'string' && typeof body.message === 'string') {
        ({ error: kind, message } = body);
      }
    } catch {
      // not JSON: keep the raw text
    }
    const ra = Number.parseInt(resp.headers.get('retry-after') ?? '', 10);
    return new IsoBoxError(resp.status, kind, message, Number.isNaN(ra) ? null : ra);
  }

  async #json(method, path, body) {
    return (await this.#fetch(method, path, body)).json();
  }

  // POST /api/v1/execute: the result object.
  execute(language, code, { stdin, ...extra } = {}) {
    return this.#json('POST', '/api/v1/execute', request(language, code, stdin, extra));
  }

  // POST /api/v1/execute/stream: yields [event, data] as they arrive, where event is `stdout` /
  // `stderr` (data: the text) or the final `result` (the result object). An `error` event throws.
  async *stream(language, code, { stdin, ...extra } = {}) {
    const body = request(language, code, stdin, extra);
    const resp = await this.#fetch('POST', '/api/v1/execute/stream', body, 'text/event-stream');
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let event = 'message';
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (data.length) {
              const payload = JSON.parse(data.join('\n'));
              if (event === 'error') throw new IsoBoxError(200, payload.error, payload.message);
              yield [event, payload];
              if (event === 'result') return;
            }
            event = 'message';
            data = [];
          } else if (!line.startsWith(':')) {
            const i = line.indexOf(':');
            const name = i < 0 ? line : line.slice(0, i);
            let v = i < 0 ? '' : line.slice(i + 1);
            if (v.startsWith(' ')) v = v.slice(1);
            if (name === 'event') event = v;
            else if (name === 'data') data.push(v);
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    throw new IsoBoxError(0, 'stream_ended', 'the stream ended without a result');
  }

  // POST /api/v1/executions: the job id.
  async submit(language, code, { stdin, ...extra } = {}) {
    return (await this.#json('POST', '/api/v1/executions', request(language, code, stdin, extra))).id;
  }

  // GET /api/v1/executions/{id}: {id, state, ...} (a done job carries the result).
  job(id) {
    return this.#json('GET', `/api/v1/executions/${encodeURIComponent(id)}`);
  }

  async wait(id, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.job(id);
      if (job.state === 'done') return job;
      if (Date.now() > deadline) throw new IsoBoxError(0, 'timeout', `job ${id} still ${job.state}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  languages() {
    return this.#json('GET', '/api/v1/languages');
  }
}

function request(language, code, stdin, extra) {
  const body = { language, code, ...extra };
  if (stdin !== undefined) body.stdin = stdin;
  return body;
}

function show(result) {
  console.log(`status: ${result.status} (exit code ${result.exit_code})`);
  for (const name of ['stdout', 'stderr']) {
    for (const line of (result[name] ?? '').split('\n')) {
      if (line !== '') console.log(`${name}: ${line}`);
    }
  }
}

async function main() {
  const box = new IsoBox();
  console.log(`IsoBox at ${box.url}`);

  console.log('== POST /api/v1/execute');
  const result = await box.execute('python', HELLO, { stdin: 'world' });
  show(result);
  let ok = result.status === 'ok';

  console.log('== POST /api/v1/execute/stream');
  for await (const [event, data] of box.stream('python', HELLO, { stdin: 'stream' })) {
    if (event === 'result') {
      console.log(`[result] status: ${data.status}`);
      ok &&= data.status === 'ok';
    } else {
      console.log(`[${event}] ${data.trimEnd()}`);
    }
  }

  console.log('== POST /api/v1/executions + GET /api/v1/executions/{id}');
  const id = await box.submit('python', HELLO, { stdin: 'job' });
  const job = await box.wait(id);
  console.log(`job ${id}: ${job.state}`);
  show(job);
  ok &&= job.status === 'ok';

  console.log('== GET /api/v1/languages');
  const langs = await box.languages();
  console.log(`languages: ${langs.map((l) => `${l.name} ${l.version}`).join(', ')}`);
  return ok ? 0 : 1;
}

// Run main() only when executed directly (not when imported as a module).
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  try {
    process.exitCode = await main();
  } catch (e) {
    if (e instanceof IsoBoxError && e.status === 429) {
      console.error(`error: rate limited (${e.kind}): ${e.detail}; retry after ${e.retryAfter ?? '?'} s`);
    } else {
      console.error(`error: ${e.message}`);
    }
    process.exitCode = 1;
  }
}
