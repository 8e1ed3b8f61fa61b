#!/usr/bin/env python3
"""Writes N synthetic GenAI spans as flat JSONL on stdout: the shapes of
`plume bench` (host/src/bench.rs): traces of an invoke_agent span, two chat
calls and one execute_tool call, deterministic for the seed.

usage: bench/gen_spans.py N [SEED] > spans.jsonl
"""
import json
import random
import sys

MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-pro", "gcp.gemini"),
]
TOOLS = ["search_docs", "get_weather", "create_ticket", "run_sql"]
FEATURES = ["chat", "summarize", "triage"]
RESOURCE = {"service.name": "support-agent", "service.version": "1.4.2"}


def main() -> None:
    n = int(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 42)
    hex_id = lambda size: "".join(rng.choice("0123456789abcdef") for _ in range(size * 2))
    written, trace_no = 0, 0
    out = sys.stdout
    while written < n:
        trace, root = hex_id(16), hex_id(8)
        t0 = 1_764_000_000_000_000_000 + trace_no * 50_000_000
        trace_no += 1
        user, feature = f"user-{rng.randrange(500)}", rng.choice(FEATURES)
        spans = []

        def span(span_id, name, parent, kind, ms, attrs, error=False):
            s = {"trace_id": trace, "span_id": span_id, "name": name, "kind": kind,
                 "start_time_unix_nano": t0, "end_time_unix_nano": t0 + ms * 1_000_000,
                 "attributes": attrs, "resource": RESOURCE}
            if parent:
                s["parent_span_id"] = parent
            if error:
                s["status"] = {"code": "error", "message": "rate limited"}
            spans.append(s)

        span(root, "invoke_agent support", None, "internal", 3000,
             {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
              "plume.feature": feature, "user.id": user})
        for _ in range(2):
            model, provider = rng.choice(MODELS)
            tokens_in, tokens_out = rng.randrange(200, 8000), rng.randrange(20, 1200)
            span(hex_id(8), f"chat {model}", root, "client", 300 + tokens_in // 4 + tokens_out * 2,
                 {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                  "gen_ai.request.model": model, "gen_ai.response.model": model,
                  "gen_ai.response.id": "chatcmpl-" + hex_id(8),
                  "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out,
                  "gen_ai.usage.cache_read.input_tokens": tokens_in // 4,
                  "gen_ai.request.temperature": 0.2, "gen_ai.response.finish_reasons": ["stop"],
                  "plume.feature": feature, "user.id": user},
                 rng.randrange(100) < 3)
        tool = rng.choice(TOOLS)
        span(hex_id(8), f"execute_tool {tool}", root, "internal", rng.randrange(5, 800),
             {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
              "gen_ai.tool.call.id": "call_" + hex_id(6), "gen_ai.tool.type": "function",
              "plume.feature": feature, "user.id": user})
        for s in spans[: n - written]:
            out.write(json.dumps(s, separators=(",", ":")) + "\n")
        written += len(spans[: n - written])


if __name__ == "__main__":
    main()
