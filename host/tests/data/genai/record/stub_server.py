#!/usr/bin/env python3
"""Tiny stub of the OpenAI Chat Completions and Anthropic Messages APIs (stdlib only).

Listens on 127.0.0.1 on a free port and answers with canned, realistic bodies.
Nothing here talks to any other host.

Which answer a request gets (first match wins):
  1. the request header `x-stub-outcome`; else the next outcome queued in-process
     with `server.state.plan(...)` (what record.py uses, so the recorded prompts and
     headers carry no test markers); else a marker `[[outcome]]` in the text of the
     request's messages;
  2. the request: `tools` present -> a tool call; otherwise a plain answer.

Outcomes:
  ok               OpenAI finish_reason "stop"         / Anthropic stop_reason "end_turn"
  tool_calls       OpenAI finish_reason "tool_calls"   / Anthropic stop_reason "tool_use"
  length           OpenAI finish_reason "length"       / Anthropic stop_reason "max_tokens"
  truncated        the same finish as `length`, but with the usage of `ok` for the prompt
                   (OpenAI 1610 prompt / 1408 cached; Anthropic 412 + 2048 cache read +
                   1024 cache write), so a truncated answer and a later `ok` answer to the
                   identical request show the same prompt counts
  rate_limit       HTTP 429 (OpenAI rate_limit_exceeded / Anthropic rate_limit_error)
  context_length   HTTP 400 (OpenAI context_length_exceeded / Anthropic "prompt is too long")
  auth             HTTP 401 (OpenAI invalid_api_key / Anthropic authentication_error)
  rate_limit_once  HTTP 429 the first time a given request body is seen, then as
                   if there were no outcome (a retry succeeds)
An API key of "sk-bad" also gives 401.

Response ids are deterministic: derived from a salt (record.py uses the scenario
name), the request body and a per-server request counter, so a fresh server
answering the same sequence of requests gives the same ids.

Run alone:  python3 stub_server.py   (prints the base URL, serves until Ctrl-C)
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Fixed creation time, so bodies are deterministic (2026-11-25T12:00:00Z).
CREATED = 1795608000

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

OUTCOMES = {"ok", "tool_calls", "length", "truncated", "rate_limit", "context_length", "auth", "rate_limit_once"}

# Simulated latency (seconds) per outcome, scaled by STUB_LATENCY_SCALE (default 1).
LATENCY = {"ok": 0.35, "tool_calls": 0.30, "length": 0.60, "truncated": 0.60, "rate_limit": 0.02,
           "context_length": 0.03, "auth": 0.01}


def _digits(data: bytes, alphabet: str, n: int) -> str:
    num = int.from_bytes(hashlib.sha256(data).digest(), "big")
    out = []
    for _ in range(n):
        num, r = divmod(num, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def _message_text(body: dict) -> str:
    parts = []
    if isinstance(body.get("system"), str):
        parts.append(body["system"])
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            for b in c:
                if isinstance(b, dict) and isinstance(b.get("text"), str):
                    parts.append(b["text"])
    return "\n".join(parts)


class StubState:
    def __init__(self, salt: str = "") -> None:
        self.salt = salt.encode()  # mixed into response ids, so two servers' ids differ
        self.lock = threading.Lock()
        self.counter = 0
        self.seen_once: set[str] = set()
        self.log: list[dict] = []  # (path, outcome, status) of each request, for tests
        self.planned: collections.deque[str] = collections.deque()

    def plan(self, *outcomes: str) -> None:
        """Queues the outcomes of the next requests (in-process use; invisible in the requests)."""
        for o in outcomes:
            if o not in OUTCOMES:
                raise ValueError(f"unknown outcome {o}")
        with self.lock:
            self.planned.extend(outcomes)

    def next(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter


class Handler(BaseHTTPRequestHandler):
    server_version = "stub/1.0"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep quiet unless asked
        if os.environ.get("STUB_VERBOSE"):
            sys.stderr.write("stub: " + (fmt % args) + "\n")

    # ---- plumbing -------------------------------------------------------
    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _outcome(self, raw: bytes, body: dict) -> str:
        st: StubState = self.server.state  # type: ignore[attr-defined]
        outcome = (self.headers.get("x-stub-outcome") or "").strip()
        if outcome not in OUTCOMES:
            with st.lock:
                outcome = st.planned.popleft() if st.planned else ""
        if outcome not in OUTCOMES:
            m = re.search(r"\[\[([a-z_]+)\]\]", _message_text(body))
            outcome = m.group(1) if m and m.group(1) in OUTCOMES else ""
        key = (self.headers.get("x-api-key") or self.headers.get("authorization") or "")
        if key.endswith("sk-bad"):
            return "auth"
        if outcome == "rate_limit_once":
            h = hashlib.sha256(self.path.encode() + raw).hexdigest()
            with st.lock:
                first = h not in st.seen_once
                st.seen_once.add(h)
            outcome = "rate_limit" if first else ""
        if not outcome:
            outcome = "tool_calls" if body.get("tools") else "ok"
        return outcome

    def do_POST(self):  # noqa: N802
        st: StubState = self.server.state  # type: ignore[attr-defined]
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/chat/completions", "/v1/messages"):
            self._send(404, {"error": {"message": f"Unknown path {path}", "type": "invalid_request_error"}})
            return
        seq = st.next()
        outcome = self._outcome(raw, body)
        scale = float(os.environ.get("STUB_LATENCY_SCALE", "1"))
        time.sleep(LATENCY.get(outcome, 0.1) * scale)
        seed = st.salt + b"|" + raw + str(seq).encode()
        if path == "/v1/chat/completions":
            status, resp, headers = openai_answer(outcome, body, seed)
        else:
            status, resp, headers = anthropic_answer(outcome, body, seed)
        st.log.append({"path": path, "outcome": outcome, "status": status,
                       "traceparent": self.headers.get("traceparent")})
        self._send(status, resp, headers)


# ---- OpenAI -------------------------------------------------------------

def openai_answer(outcome: str, body: dict, seed: bytes):
    model = body.get("model", "gpt-4o")
    req_id = "req_" + _digits(b"req" + seed, "0123456789abcdef", 32)
    headers = {"x-request-id": req_id, "openai-processing-ms": "412", "openai-version": "2020-10-01"}
    if outcome == "auth":
        return 401, {"error": {
            "message": "Incorrect API key provided: sk-bad. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}, headers
    if outcome == "rate_limit":
        headers.update({"retry-after": "2", "x-ratelimit-limit-tokens": "30000",
                        "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2.4s"})
        return 429, {"error": {
            "message": f"Rate limit reached for {model} in organization org-stub on tokens per min (TPM): "
                       "Limit 30000, Used 29412, Requested 1450. Please try again in 1.724s. "
                       "Visit https://platform.openai.com/account/rate-limits to learn more.",
            "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}, headers
    if outcome == "context_length":
        return 400, {"error": {
            "message": "This model's maximum context length is 128000 tokens. However, your messages "
                       "resulted in 131072 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}, headers

    resp_model = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
                  "o4-mini": "o4-mini-2025-04-16"}.get(model, model)
    reasoning_model = model.startswith(("o1", "o3", "o4", "gpt-5"))
    if outcome == "tool_calls":
        tools = body.get("tools") or []
        fn = (tools[0].get("function") or {}).get("name", "search_docs") if tools else "search_docs"
        message = {"role": "assistant", "content": None, "refusal": None, "annotations": [],
                   "tool_calls": [{
                       "id": "call_" + _digits(b"call" + seed, _B62, 24), "type": "function",
                       "function": {"name": fn, "arguments": json.dumps({"query": "reset two-factor authentication"})}}]}
        finish, prompt, cached, completion, reasoning = "tool_calls", 1450, 1024, 38, 0
    elif outcome == "length":
        message = {"role": "assistant", "refusal": None, "annotations": [],
                   "content": "To migrate the billing account you first need to export the invoices, then"}
        finish, prompt, cached, completion = "length", 820, 0, int(body.get("max_completion_tokens")
                                                                     or body.get("max_tokens") or 300)
        reasoning = int(completion * 0.85) if reasoning_model else 0
    elif outcome == "truncated":
        message = {"role": "assistant", "refusal": None, "annotations": [],
                   "content": "You can reset two-factor authentication from Settings > Security >"}
        finish, prompt, cached = "length", 1610, 1408
        completion = int(body.get("max_completion_tokens") or body.get("max_tokens") or 300)
        reasoning = int(completion * 0.85) if reasoning_model else 0
    else:
        message = {"role": "assistant", "refusal": None, "annotations": [],
                   "content": "You can reset two-factor authentication from Settings > Security > 2FA."}
        finish, prompt, cached, completion, reasoning = "stop", 1610, 1408, 24, 0
    return 200, {
        "id": "chatcmpl-" + _digits(b"chatcmpl" + seed, _B62, 29),
        "object": "chat.completion",
        "created": CREATED,
        "model": resp_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_" + _digits(b"fp" + model.encode(), "0123456789abcdef", 10),
    }, headers


# ---- Anthropic ----------------------------------------------------------

def anthropic_answer(outcome: str, body: dict, seed: bytes):
    model = body.get("model", "claude-sonnet-4-5")
    req_id = "req_011C" + _digits(b"req" + seed, _B58, 20)
    headers = {"request-id": req_id, "anthropic-organization-id": "00000000-0000-4000-8000-000000000001"}

    def err(status, etype, msg):
        return status, {"type": "error", "error": {"type": etype, "message": msg}, "request_id": req_id}, headers

    if outcome == "auth":
        return err(401, "authentication_error", "invalid x-api-key")
    if outcome == "rate_limit":
        headers.update({"retry-after": "12", "anthropic-ratelimit-input-tokens-limit": "40000",
                        "anthropic-ratelimit-input-tokens-remaining": "0",
                        "anthropic-ratelimit-input-tokens-reset": "2026-11-25T12:00:12Z"})
        return err(429, "rate_limit_error",
                   "This request would exceed the rate limit for your organization "
                   "(00000000-0000-4000-8000-000000000001) of 40,000 input tokens per minute. "
                   "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
                   "response headers for current usage. Please reduce the prompt length or the maximum "
                   "tokens requested, or try again later.")
    if outcome == "context_length":
        return err(400, "invalid_request_error", "prompt is too long: 215341 tokens > 200000 maximum")

    resp_model = {"claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
                  "claude-haiku-4-5": "claude-haiku-4-5-20251001"}.get(model, model)
    if outcome == "tool_calls":
        tools = body.get("tools") or []
        name = tools[0].get("name", "search_docs") if tools else "search_docs"
        content = [{"type": "text", "text": "Let me look that up in the docs."},
                   {"type": "tool_use", "id": "toolu_01" + _digits(b"toolu" + seed, _B58, 22), "name": name,
                    "input": {"query": "reset two-factor authentication"}}]
        stop, inp, cread, cwrite, out = "tool_use", 512, 2048, 0, 64
    elif outcome == "length":
        content = [{"type": "text", "text": "To migrate the billing account you first need to export the invoices, then"}]
        stop, inp, cread, cwrite, out = "max_tokens", 380, 0, 0, int(body.get("max_tokens") or 64)
    elif outcome == "truncated":
        content = [{"type": "text", "text": "You can reset two-factor authentication from Settings > Security >"}]
        stop, inp, cread, cwrite, out = "max_tokens", 412, 2048, 1024, int(body.get("max_tokens") or 64)
    else:
        content = [{"type": "text", "text": "You can reset two-factor authentication from Settings > Security > 2FA."}]
        stop, inp, cread, cwrite, out = "end_turn", 412, 2048, 1024, 187
    return 200, {
        "id": "msg_01" + _digits(b"msg" + seed, _B58, 22),
        "type": "message",
        "role": "assistant",
        "model": resp_model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": inp,
            "cache_creation_input_tokens": cwrite,
            "cache_read_input_tokens": cread,
            "cache_creation": {"ephemeral_5m_input_tokens": cwrite, "ephemeral_1h_input_tokens": 0},
            "output_tokens": out,
            "service_tier": "standard",
        },
    }, headers


# ---- server -------------------------------------------------------------

def start(port: int = 0, salt: str = ""):
    """Starts the stub in a daemon thread. Returns (server, base_url); server.state.log lists requests,
    server.state.plan(...) queues outcomes. `salt` makes the response ids differ between servers."""
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.state = StubState(salt)  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, name="stub-server", daemon=True)
    t.start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


if __name__ == "__main__":
    srv, url = start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.shutdown()
