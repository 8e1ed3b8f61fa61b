#!/usr/bin/env python3
"""Reference costs computed by LiteLLM itself, for plume's pricer tests.

Run with the litellm wheel installed (see README.md in this folder). The script is fully
offline: LITELLM_LOCAL_MODEL_COST_MAP=True makes LiteLLM read the price file bundled in the
wheel (litellm/model_prices_and_context_window_backup.json) instead of fetching it.

Every number written to litellm_cases.json is a value returned by a LiteLLM function; nothing
here computes a cost by hand. Cases LiteLLM refuses (raises for) are listed under "skipped"
with the error instead.

Usage convention (the "inclusive" one LiteLLM uses):
  prompt_tokens      = all input tokens, INCLUDING cache_read and cache_creation tokens
  completion_tokens  = all output tokens, INCLUDING reasoning tokens

Outputs (next to this script unless --out-dir is given):
  litellm_cases.json        the cases and skipped cases
  litellm_models_used.json  the price-file entries of the models used, verbatim
"""

from __future__ import annotations

import os

# Must be set before litellm is imported: it decides where the model cost map comes from.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import argparse
import copy
import hashlib
import importlib.util
import json
import pathlib
import sys

import litellm
from litellm import completion_cost, cost_per_token
from litellm.types.utils import ModelResponse, Usage

PRICE_FILE_NAME = "model_prices_and_context_window_backup.json"


def price_file_path() -> pathlib.Path:
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    return pathlib.Path(spec.origin).parent / PRICE_FILE_NAME


# ---------------------------------------------------------------------------------------
# Case table.
#   style "openai":    cache reads go in prompt_tokens_details.cached_tokens
#                      (OpenAI / Gemini / DeepSeek / Mistral usage shape)
#   style "anthropic": cache reads / writes go in the Usage kwargs cache_read_input_tokens /
#                      cache_creation_input_tokens (the shape LiteLLM builds for Anthropic)
#   style "ints":      cost_per_token(model, prompt_tokens=, completion_tokens=,
#                      cache_read_input_tokens=, cache_creation_input_tokens=) without a Usage
# In every style prompt_tokens is the inclusive count.
# ---------------------------------------------------------------------------------------


def case(model, p, c, *, read=0, write=0, reasoning=0, style="openai", group, note):
    return {
        "model": model,
        "usage": {
            "prompt_tokens": p,
            "completion_tokens": c,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
            "reasoning_tokens": reasoning,
        },
        "style": style,
        "group": group,
        "what": note,
    }


CASES = [
    # --- plain input/output, several providers -------------------------------------------
    case("gpt-4o", 1000, 500, group="plain", note="openai base input/output rates"),
    case("gpt-4o-mini", 1000, 500, group="plain", note="openai base input/output rates"),
    case("claude-sonnet-4-5", 1000, 500, style="anthropic", group="plain",
         note="anthropic base input/output rates"),
    case("claude-haiku-4-5", 1000, 500, style="anthropic", group="plain",
         note="anthropic haiku base input/output rates"),
    case("gemini-2.5-pro", 1000, 500, group="plain",
         note="vertex_ai-language-models key without prefix, below the 200k threshold"),
    case("gemini/gemini-2.5-pro", 1000, 500, group="plain",
         note="gemini/ prefixed key (Google AI Studio), below the 200k threshold"),
    case("vertex_ai/claude-sonnet-4-5", 1000, 500, style="anthropic", group="plain",
         note="vertex_ai/ prefixed key, below its 200k threshold"),
    case("bedrock/us-east-1/deepseek.v3.2", 1000, 500, group="plain",
         note="bedrock/<region>/ prefixed key"),
    case("bedrock/us-east-1/mistral.mistral-large-2402-v1:0", 1000, 500, group="plain",
         note="bedrock/<region>/ prefixed key, mistral on bedrock"),
    case("anthropic.claude-sonnet-4-5-20250929-v1:0", 1000, 500, style="anthropic", group="plain",
         note="bedrock_converse key without prefix, below its 200k threshold"),
    case("mistral/mistral-large-latest", 1000, 500, group="plain", note="mistral base rates"),
    case("deepseek/deepseek-chat", 1000, 500, group="plain", note="deepseek base rates"),
    # --- cache read -------------------------------------------------------------------------
    case("gpt-4o", 1000, 500, read=600, group="cache_read",
         note="OpenAI style: 600 of 1000 prompt tokens cached (prompt_tokens_details.cached_tokens)"),
    case("gpt-4o-mini", 10000, 200, read=8000, group="cache_read",
         note="OpenAI style cached_tokens"),
    case("claude-sonnet-4-5", 1000, 500, read=800, style="anthropic", group="cache_read",
         note="Anthropic style cache_read_input_tokens=800 inside inclusive prompt_tokens=1000"),
    case("claude-sonnet-4-5", 1000, 500, read=800, style="ints", group="cache_read",
         note="same as previous via plain cost_per_token int arguments (no Usage object)"),
    case("claude-haiku-4-5", 5000, 300, read=4000, style="anthropic", group="cache_read",
         note="Anthropic style cache read, haiku"),
    case("mistral/mistral-large-latest", 2000, 100, read=500, group="cache_read",
         note="mistral cache_read_input_token_cost"),
    case("deepseek/deepseek-chat", 2000, 100, read=1500, group="cache_read",
         note="deepseek cache hit (cached_tokens)"),
    case("gemini-2.5-pro", 10000, 500, read=6000, group="cache_read",
         note="gemini cached_content tokens below the threshold"),
    # --- cache write ------------------------------------------------------------------------
    case("claude-sonnet-4-5", 1000, 500, write=800, style="anthropic", group="cache_write",
         note="Anthropic cache_creation_input_tokens=800 (5-minute TTL rate)"),
    case("claude-sonnet-4-5", 1000, 500, read=800, write=100, style="anthropic", group="cache_write",
         note="Anthropic cache read + cache write in the same request"),
    case("claude-haiku-4-5", 3000, 200, read=500, write=2000, style="anthropic", group="cache_write",
         note="Anthropic haiku cache read + write"),
    case("claude-haiku-4-5", 3000, 200, read=500, write=2000, style="ints", group="cache_write",
         note="same as previous via plain cost_per_token int arguments"),
    case("deepseek/deepseek-chat", 2000, 100, write=1000, style="anthropic", group="cache_write",
         note="cache_creation_input_token_cost is an explicit 0.0: cache writes are free"),
    case("gpt-4o", 2000, 100, write=1000, style="anthropic", group="cache_write",
         note="no cache_creation_input_token_cost in the entry: writes bill at the input rate"),
    # --- missing cache-read rate -----------------------------------------------------------
    case("gpt-4-turbo", 1000, 500, read=600, group="no_cache_read_rate",
         note="no cache_read_input_token_cost: cached tokens bill at the input rate"),
    case("gpt-4o-2024-05-13", 1000, 500, read=600, group="no_cache_read_rate",
         note="no cache_read_input_token_cost: cached tokens bill at the input rate"),
    case("dashscope/qwen-turbo", 1000, 500, read=600, group="no_cache_read_rate",
         note="dashscope calculator, no cache_read rate: cached tokens bill at the input rate"),
    # --- reasoning --------------------------------------------------------------------------
    case("dashscope/qwen-turbo", 1000, 500, reasoning=300, group="reasoning",
         note="has output_cost_per_reasoning_token (5e-07) different from output (2e-07); "
              "300 of the 500 completion tokens are reasoning"),
    case("perplexity/sonar-deep-research", 1000, 500, reasoning=300, group="reasoning",
         note="perplexity calculator, has its own output_cost_per_reasoning_token"),
    case("gemini-2.5-flash", 1000, 500, reasoning=300, group="reasoning",
         note="has output_cost_per_reasoning_token equal to output rate"),
    case("o3", 1000, 500, reasoning=400, group="reasoning",
         note="no output_cost_per_reasoning_token: reasoning bills at the output rate"),
    case("claude-sonnet-4-5", 1000, 500, reasoning=400, style="anthropic", group="reasoning",
         note="no output_cost_per_reasoning_token: reasoning bills at the output rate"),
    # --- threshold tiers (_above_Nk_tokens), strict > -------------------------------------
    case("gemini-2.5-pro", 150000, 1000, group="threshold", note="below 200k: base rates"),
    case("gemini-2.5-pro", 200000, 1000, group="threshold",
         note="exactly 200k: still base rates (strict >)"),
    case("gemini-2.5-pro", 200001, 1000, group="threshold",
         note="200k+1: whole request at _above_200k_tokens rates"),
    case("gemini-2.5-pro", 250000, 1000, group="threshold", note="above 200k: tier rates"),
    case("gemini-2.5-pro", 250000, 1000, read=100000, group="threshold",
         note="above 200k with cache read: cache_read_input_token_cost_above_200k_tokens"),
    case("gemini-2.5-pro", 210000, 1000, read=180000, group="threshold",
         note="threshold tested on the inclusive prompt_tokens (only 30k uncached)"),
    case("gemini/gemini-2.5-pro", 250000, 1000, group="threshold",
         note="gemini/ key above 200k"),
    case("vertex_ai/claude-sonnet-4-5", 150000, 1000, style="anthropic", group="threshold",
         note="claude with _above_200k rates: below"),
    case("vertex_ai/claude-sonnet-4-5", 200000, 1000, style="anthropic", group="threshold",
         note="claude with _above_200k rates: exactly 200k stays at base"),
    case("vertex_ai/claude-sonnet-4-5", 250000, 1000, style="anthropic", group="threshold",
         note="claude with _above_200k rates: above"),
    case("vertex_ai/claude-sonnet-4-5", 250000, 1000, read=100000, write=50000, style="anthropic",
         group="threshold",
         note="above 200k with cache read + write: _above_200k cache rates"),
    case("anthropic.claude-sonnet-4-5-20250929-v1:0", 250000, 1000, style="anthropic",
         group="threshold", note="bedrock_converse claude above 200k"),
    case("claude-sonnet-4-5", 250000, 1000, style="anthropic", group="threshold",
         note="anthropic entry has no _above_ keys: 250k stays at base rates"),
    # --- tiered_pricing list (dashscope) ---------------------------------------------------
    case("dashscope/qwen3-max", 32000, 1000, group="tiered_pricing",
         note="range [0,32000]: exactly the end of tier 1 stays in tier 1 (start < n <= end)"),
    case("dashscope/qwen3-max", 32001, 1000, group="tiered_pricing", note="tier 2"),
    case("dashscope/qwen3-max", 200000, 1000, read=50000, group="tiered_pricing",
         note="tier 3 with cache read; the tier has no cache rate so cached tokens bill at the tier input rate"),
    case("dashscope/qwen3-max", 300000, 1000, group="tiered_pricing",
         note="above every range: last tier applies"),
    case("dashscope/qwen-plus-latest", 1000, 500, reasoning=300, group="tiered_pricing",
         note="tier 1 with a per-tier output_cost_per_reasoning_token"),
    case("dashscope/qwen-plus-latest", 300000, 500, reasoning=300, group="tiered_pricing",
         note="tier 2 with a per-tier output_cost_per_reasoning_token"),
    # --- xai: inclusive (>=) threshold -----------------------------------------------------
    case("xai/grok-4.3", 199999, 1000, group="xai_threshold", note="one below 200k: base rates"),
    case("xai/grok-4.3", 200000, 1000, group="xai_threshold",
         note="exactly 200k: xai uses >=, so tier rates apply"),
    case("xai/grok-4.3", 200000, 1000, read=150000, group="xai_threshold",
         note="exactly 200k with cache read: tier cache_read rate"),
    case("xai/grok-4.3", 1000, 500, reasoning=300, group="xai_threshold",
         note="xai reasoning: billed as output tokens (calculator drops completion details)"),
    # --- model-name resolution: the name passed is not itself a price-file key -------------
    case("anthropic/claude-sonnet-4-5", 1000, 500, read=800, style="anthropic", group="name_resolution",
         note="provider-prefixed name resolves to the unprefixed key claude-sonnet-4-5"),
    case("openai/gpt-4o", 1000, 500, read=600, group="name_resolution",
         note="provider-prefixed name resolves to the unprefixed key gpt-4o"),
    case("vertex_ai/gemini-2.5-pro", 250000, 1000, group="name_resolution",
         note="vertex_ai/ name resolves to the unprefixed key gemini-2.5-pro (above 200k)"),
    case("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", 250000, 1000, style="anthropic",
         group="name_resolution",
         note="bedrock/ name resolves to the unprefixed bedrock_converse key (above 200k)"),
    # --- not in the price file, but LiteLLM still answers (written under "unpriced") --------
    case("claude-sonnet-4-20250514", 1000, 500, style="anthropic", group="unpriced",
         note="no entry under this name in the price file; LiteLLM returns 0.0 without raising"),
    # --- refused (should land in skipped) --------------------------------------------------
    case("totally-unknown-model-x", 1000, 500, group="refused",
         note="unknown model, expected to be refused"),
]


def build_usage(c: dict) -> Usage:
    u = c["usage"]
    p, comp = u["prompt_tokens"], u["completion_tokens"]
    kwargs: dict = {"prompt_tokens": p, "completion_tokens": comp, "total_tokens": p + comp}
    if u["reasoning_tokens"]:
        kwargs["completion_tokens_details"] = {"reasoning_tokens": u["reasoning_tokens"]}
    if c["style"] == "openai":
        if u["cache_creation_input_tokens"]:
            raise ValueError("openai style case cannot carry cache writes")
        if u["cache_read_input_tokens"]:
            kwargs["prompt_tokens_details"] = {"cached_tokens": u["cache_read_input_tokens"]}
    elif c["style"] == "anthropic":
        kwargs["cache_read_input_tokens"] = u["cache_read_input_tokens"]
        kwargs["cache_creation_input_tokens"] = u["cache_creation_input_tokens"]
    else:
        raise ValueError(c["style"])
    return Usage(**kwargs)


def usage_repr(c: dict) -> str:
    u = c["usage"]
    parts = [f"prompt_tokens={u['prompt_tokens']}", f"completion_tokens={u['completion_tokens']}",
             f"total_tokens={u['prompt_tokens'] + u['completion_tokens']}"]
    if u["reasoning_tokens"]:
        parts.append(f"completion_tokens_details={{'reasoning_tokens': {u['reasoning_tokens']}}}")
    if c["style"] == "openai" and u["cache_read_input_tokens"]:
        parts.append(f"prompt_tokens_details={{'cached_tokens': {u['cache_read_input_tokens']}}}")
    if c["style"] == "anthropic":
        parts.append(f"cache_read_input_tokens={u['cache_read_input_tokens']}")
        parts.append(f"cache_creation_input_tokens={u['cache_creation_input_tokens']}")
    return "Usage(" + ", ".join(parts) + ")"


def run_case(c: dict) -> dict:
    model = c["model"]
    u = c["usage"]
    if c["style"] == "ints":
        kwargs = dict(
            model=model,
            prompt_tokens=u["prompt_tokens"],
            completion_tokens=u["completion_tokens"],
            cache_read_input_tokens=u["cache_read_input_tokens"],
            cache_creation_input_tokens=u["cache_creation_input_tokens"],
        )
        if u["reasoning_tokens"]:
            raise ValueError("ints style cannot carry reasoning tokens")
        prompt_cost, completion_cost_ = cost_per_token(**kwargs)
        call = "litellm.cost_per_token(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
        total = prompt_cost + completion_cost_
        total_call = "prompt_cost_usd + completion_cost_usd (no Usage object in this style)"
    else:
        usage = build_usage(c)
        prompt_cost, completion_cost_ = cost_per_token(
            model=model, usage_object=copy.deepcopy(usage)
        )
        call = f"litellm.cost_per_token(model={model!r}, usage_object={usage_repr(c)})"
        response = ModelResponse(model=model, usage=copy.deepcopy(usage))
        total = completion_cost(completion_response=response, model=model)
        total_call = (f"litellm.completion_cost(completion_response=ModelResponse(model={model!r}, "
                      f"usage=<same Usage>), model={model!r})")
    info = litellm.get_model_info(model=model)
    return {
        "model": model,
        "price_key": info.get("key"),
        "litellm_provider": info.get("litellm_provider"),
        "usage": u,
        "prompt_cost_usd": prompt_cost,
        "completion_cost_usd": completion_cost_,
        "total_cost_usd": total,
        "total_equals_prompt_plus_completion": total == prompt_cost + completion_cost_,
        "group": c["group"],
        "note": f"{c['what']}. prompt/completion from: {call}. total from: {total_call}.",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=str(pathlib.Path(__file__).resolve().parent))
    args = ap.parse_args()
    out_dir = pathlib.Path(args.out_dir)

    pf = price_file_path()
    raw = pf.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    price_map = json.loads(raw)

    # The cost map LiteLLM uses must be the bundled file. (At load LiteLLM drops the
    # non-model key "fallback_generalizations" and fills "alias_of" entries; the entries
    # used below are checked to be identical to the file's.)
    if not set(litellm.model_cost) <= set(price_map):
        raise SystemExit("litellm.model_cost has keys that are not in the bundled price file")

    results, skipped, unpriced = [], [], []
    for c in CASES:
        try:
            r = run_case(c)
            if r["price_key"] in price_map:
                if litellm.model_cost[r["price_key"]] != price_map[r["price_key"]]:
                    raise SystemExit(f"{r['price_key']}: LiteLLM's loaded entry differs from the file")
                results.append(r)
            else:
                unpriced.append(r)
        except Exception as e:  # noqa: BLE001 - record LiteLLM's refusal verbatim
            skipped.append({
                "model": c["model"],
                "usage": c["usage"],
                "group": c["group"],
                "note": c["what"],
                "error": f"{type(e).__name__}: {e}"[:600],
            })

    out = {
        "generated_by": "litellm_cases.py (values returned by LiteLLM, not computed by hand)",
        "litellm_version": litellm.version if isinstance(getattr(litellm, "version", None), str)
        else __import__("importlib.metadata").metadata.version("litellm"),
        "price_file": f"litellm/{PRICE_FILE_NAME}",
        "price_file_sha256": sha,
        "usage_convention": "prompt_tokens includes cache_read_input_tokens and "
                            "cache_creation_input_tokens; completion_tokens includes reasoning_tokens",
        "cases": results,
        "unpriced": unpriced,
        "skipped": skipped,
    }
    (out_dir / "litellm_cases.json").write_text(json.dumps(out, indent=2) + "\n")

    # Keyed by price_key: the price-file key LiteLLM resolved each case's model to.
    keys = sorted({r["price_key"] for r in results})
    used = {k: price_map[k] for k in keys}
    (out_dir / "litellm_models_used.json").write_text(json.dumps(used, indent=2) + "\n")

    print(f"litellm {out['litellm_version']}; price file sha256 {sha}")
    print(f"{len(results)} cases, {len(unpriced)} unpriced, {len(skipped)} skipped")
    for s in skipped:
        print(f"  skipped {s['model']}: {s['error'][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
