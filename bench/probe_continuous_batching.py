"""Probe transformers' continuous batching against plain ``generate()`` on the default model.

Same process, same loaded model (float32, one torch thread): ``generate()`` one prompt
after another (baseline), then ``model.generate_batch`` twice (its first call includes
setting up its paged cache). Reports seconds, tokens/s and how many requests' greedy
tokens equal ``generate()``'s. Needs the converted default model under
``<data_dir>/models`` (``marketray serve`` or the generation tests create it). Prints one
JSON object; the decision is in docs/performance.md.

    python bench/probe_continuous_batching.py [--users 8] [--tokens 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    path = next((args.data_dir / "models").glob("SmolLM2-135M-Instruct*"))
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    prompts = [tokenizer(tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Explain what the RSI indicator means for stock "
                                     f"number {i} in two sentences."}],
        add_generation_prompt=True, tokenize=False))["input_ids"] for i in range(args.users)]
    config = GenerationConfig(max_new_tokens=args.tokens, do_sample=False,
                              eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.eos_token_id)
    result: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    reference = [model.generate(torch.tensor([p]), generation_config=config)[0, len(p):].tolist()
                 for p in prompts]
    elapsed = time.perf_counter() - start
    produced = sum(map(len, reference))
    result["sequential_generate"] = {"s": round(elapsed, 2), "tokens": produced,
                                     "tokens_per_second": round(produced / elapsed, 1)}
    for arm in ("continuous_first_call", "continuous_second_call"):
        start = time.perf_counter()
        outputs = model.generate_batch(inputs=prompts, generation_config=config)
        elapsed = time.perf_counter() - start
        tokens = {key: list(out.generated_tokens) for key, out in outputs.items()}
        produced = sum(map(len, tokens.values()))
        result[arm] = {"s": round(elapsed, 2), "tokens": produced,
                       "tokens_per_second": round(produced / elapsed, 1),
                       "equal_to_generate": sum(tokens.get(f"req_{i}") == reference[i]
                                                for i in range(args.users))}
    print(json.dumps({"benchmark": "continuous_batching_probe", "users": args.users,
                      "new_tokens": args.tokens, "baseline": "sequential_generate",
                      **result}, indent=2))


if __name__ == "__main__":
    main()
