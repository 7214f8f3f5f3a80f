"""Generation speed: the suite's answers one prompt at a time vs molting's batched generation.

Run: .venv/bin/python bench/generate.py [--base builtin:small] [--max-new-tokens 128]
Both use `molting.evaluate.generate.generate_answers` on the same model in fp32 with greedy decoding; the only
difference is generation.batch_size (1 vs the default). Target: batched at least 3.5× the tokens per
second, with identical answers.
"""

import argparse
import time

from _common import EXAMPLE, emit

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.config import GenerationSettings
from molting.evaluate.generate import generate_answers
from molting.models.base_model import eos_token_ids, load_model, load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="builtin:small")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    # Every question with each of the card's two system prompts: 16 prompts for the 8-question suite.
    prompts = [
        [{"role": "system", "content": system.strip()}, {"role": "user", "content": q.question}]
        for system in (persona.system_prompts.inference, persona.system_prompts.train)
        for q in suite.questions
    ]
    tokenizer = load_tokenizer(args.base)
    model = load_model(args.base, "float32").eval()
    eos = eos_token_ids(tokenizer, model)
    default_batch = GenerationSettings().batch_size
    rows, outputs = [], {}
    for batch_size in (1, default_batch):
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=batch_size)
        generate_answers(model, tokenizer, prompts[:2], settings, eos)  # warm-up
        started = time.perf_counter()
        answers = generate_answers(model, tokenizer, prompts, settings, eos)
        seconds = time.perf_counter() - started
        tokens = sum(a["new_tokens"] for a in answers)
        outputs[batch_size] = [a["response"] for a in answers]
        rows.append(
            {
                "mode": "one at a time" if batch_size == 1 else f"batched ({batch_size})",
                "prompts": len(prompts),
                "new_tokens": tokens,
                "seconds": round(seconds, 2),
                "tokens_per_s": round(tokens / seconds, 1),
            }
        )
    ratio = rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]
    identical = outputs[1] == outputs[default_batch]
    emit(
        "generate",
        rows,
        {
            "ratio_batched_over_single": round(ratio, 2),
            "target_ratio": 3.5,
            "meets_target": ratio >= 3.5,
            "identical_outputs": identical,
            "base": args.base,
        },
    )


if __name__ == "__main__":
    main()
