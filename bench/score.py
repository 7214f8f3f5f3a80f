"""Deterministic scoring speed: rubric v2 over 10,000 answers (target: at least 2,000 answers/s), without
the fluency pass (bench/fluency.py).

Run: .venv/bin/python bench/score.py [--answers 10000]
The answers cycle through the suite's reference answers and the failure shapes a small persona model shows (identity
collapse, João as son, invented technology, template tokens, repetition, English), so every detector
does real work. The rate is of scoring with the scorer built; building it (compiling the card's patterns,
loading the word lists) is timed apart, as it happens once per `molt score` or `molt eval`.
"""

import argparse
import time

from _common import EXAMPLE, emit

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.evaluate.rubric import Scorer

FAILURES = [
    "Você é o João, o desenvolvedor da Softtor.",
    "O João é meu filho e trabalha comigo no CRM.",
    "Trabalho com TypeScript, React e também ROS2, MATLAB e OpenCV.",
    "O Molting é um projeto de pesquisa.</s>\n<|user|>\nE você?",
    "Vou começar por analisar o pedido. " + "e o João e o João " * 6,
    "I am Cláudio, the AI of Softtor, and I work with João on the CRM.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=10_000)
    args = parser.parse_args()
    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    texts = [q.reference for q in suite.questions] + FAILURES
    work = [(suite.questions[i % len(suite.questions)], texts[i % len(texts)]) for i in range(args.answers)]
    started = time.perf_counter()
    scorer = Scorer(persona)
    built = time.perf_counter() - started
    started = time.perf_counter()
    scores = [scorer.score(q, text, "stop") for q, text in work]
    seconds = time.perf_counter() - started
    rate = len(scores) / seconds
    emit(
        "score",
        [
            {
                "answers": len(scores),
                "scorer_built_s": round(built, 3),
                "seconds": round(seconds, 3),
                "answers_per_s": round(rate, 1),
                "target_per_s": 2000,
                "meets_target": rate >= 2000,
            }
        ],
    )


if __name__ == "__main__":
    main()
