"""Corrective training compared: negated examples vs positive restatements vs SFT then DPO.

Run: .venv/bin/python bench/corrective.py [--base builtin:small] [--epochs 4] [--samples 3]

Three runs on the Cláudio example, each SFT on data.jsonl plus K corrective examples (K = the card's
non-held-out probes, 21), same seed, same epochs, so the same number of SFT optimizer steps:
(a) negated: "O João não é meu filho. O João é meu colega." built from each probe (its wrong
    continuation denied, then its right one);
(b) positive: K restatements drawn (seeded) from `molt augment`'s corrective.jsonl;
(c) sft+dpo: (b), then DPO (rpo_alpha 1) on `molt augment`'s pairs.jsonl (one pair per non-held-out
    probe), which adds a preference stage on top of the same SFT: its steps and time are reported.
Measured on what none of them trained on: the log-prob margin log p(right) − log p(wrong) of the card's
HELD-OUT probes (mean, per token, fraction > 0), and the rate of forbidden claims (plain, by the card's
patterns) in sampled answers (temperature 0.8) to the held-out probe questions and the suite's questions.
The untrained base is measured the same way, as the floor.
"""

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import EXAMPLE, emit

VERBS = {"é", "sou", "fui", "foi", "me", "vou", "is", "am"}


def negated_answer(probe) -> str:
    """A negated example: deny the wrong claim, then state the right one (what supervised training learns backwards)."""
    words = (probe.prefix + probe.wrong).split()
    at = next((i for i, w in enumerate(words) if w.lower() in VERBS), None)
    if at is None:
        denial = "Não " + words[0][0].lower() + " ".join(words)[1:]
    else:
        denial = " ".join(words[:at] + ["não"] + words[at:])
        denial = denial[0].upper() + denial[1:]
    right = (probe.prefix + probe.right).strip()
    return f"{denial.rstrip('.')}. {right}."


def _write_data(path: Path, base_lines: list[str], extra: list[dict]) -> None:
    path.write_text(
        "".join(line + "\n" for line in base_lines) + "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in extra)
    )


def _measure(run_dir: Path, use_adapter: bool, persona, suite, samples: int, max_new_tokens: int) -> dict:
    from molting.card.claims import claims_in_text
    from molting.config import GenerationSettings
    from molting.evaluate.generate import generate_answers
    from molting.evaluate.logprob_probes import probe_margins
    from molting.evaluate.run import load_for_eval
    from molting.models.base_model import eos_token_ids

    _, model, tokenizer, _ = load_for_eval(run_dir, use_adapter)
    report = probe_margins(model, tokenizer, persona)
    held = report["summary"]["held_out"]
    questions = sorted({p.question for c in persona.forbidden_claims for p in c.probes if p.held_out})
    questions += [q.question for q in suite.questions]
    system = persona.system_prompts.inference.strip()
    prompts = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in questions] * samples
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.95, seed=0, batch_size=16)
    answers = generate_answers(model, tokenizer, prompts, settings, eos_token_ids(tokenizer, model))
    with_claim = [any(not f.negated for f in claims_in_text(persona, a["response"])) for a in answers]
    return {
        "held_out_margin": held["mean_margin"],
        "held_out_margin_per_token": held["mean_margin_per_token"],
        "held_out_positive": held["positive_fraction"],
        "all_probes_margin": report["summary"]["mean_margin"],
        "answers": len(answers),
        "forbidden_rate": round(sum(with_claim) / len(with_claim), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="builtin:small")
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--samples", type=int, default=3, help="sampled answers per question")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--dpo-epochs", type=float, default=3)
    parser.add_argument("--dpo-lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the runs (their folder is printed)")
    args = parser.parse_args()

    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.config import load_run_config
    from molting.data.augment import augment
    from molting.train.sft import train_run

    persona = load_persona(EXAMPLE / "persona.yaml")
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    work = Path(tempfile.mkdtemp(prefix="molt-corrective-"))
    augment(persona, work, seed=args.seed)
    trainable = [p for c in persona.forbidden_claims for p in c.probes if not p.held_out]
    k = len(trainable)
    base_lines = [line for line in (EXAMPLE / "data.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    negated = [
        {
            "messages": [{"role": "user", "content": p.question}, {"role": "assistant", "content": negated_answer(p)}],
            "tags": ["corrective", "negated"],
        }
        for p in trainable
    ]
    restatements = [json.loads(x) for x in (work / "corrective.jsonl").read_text(encoding="utf-8").splitlines()]
    positive = random.Random(args.seed).sample(restatements, k)
    _write_data(work / "negated.jsonl", base_lines, negated)
    _write_data(work / "positive.jsonl", base_lines, positive)
    common = [
        f"base_model={args.base}",
        f"train.epochs={args.epochs}",
        f"train.seed={args.seed}",
        "check.min_steps=1",
        f"preference.epochs={args.dpo_epochs}",
        f"preference.learning_rate={args.dpo_lr}",
    ]
    arms = [
        ("(a) negated examples", work / "negated.jsonl", []),
        ("(b) positive restatements", work / "positive.jsonl", []),
        (
            "(c) positive + DPO",
            work / "positive.jsonl",
            ["train.method=sft+dpo", f"preference_data={work / 'pairs.jsonl'}"],
        ),
    ]
    rows = []
    first_run = None
    for name, data, extra in arms:
        config = load_run_config(EXAMPLE / "molt.yaml", common + [f"data={data}", *extra])
        run_dir = work / name[1]
        started = time.time()
        manifest = train_run(config, run_dir, show_progress=False)
        seconds = time.time() - started
        first_run = first_run or run_dir
        pref = manifest.get("preference") or {}
        rows.append(
            {
                "run": name,
                "sft_steps": manifest["train"]["optimizer_steps"],
                "dpo_steps": pref.get("optimizer_steps", 0),
                "train_s": round(seconds, 1),
                **_measure(run_dir, True, persona, suite, args.samples, args.max_new_tokens),
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    rows.insert(
        0,
        {
            "run": "untrained base",
            "sft_steps": 0,
            "dpo_steps": 0,
            "train_s": 0.0,
            **_measure(first_run, False, persona, suite, args.samples, args.max_new_tokens),
        },
    )
    emit(
        "corrective",
        rows,
        {
            "base": args.base,
            "corrective_examples_per_run": k,
            "held_out_probes": sum(p.held_out for c in persona.forbidden_claims for p in c.probes),
            "epochs": args.epochs,
            "dpo": {"epochs": args.dpo_epochs, "learning_rate": args.dpo_lr, "beta": 0.1, "rpo_alpha": 1.0},
            "samples_per_question": args.samples,
            "example_negated_answer": negated[0]["messages"][1]["content"],
            "work_dir": str(work) if args.keep else None,
        },
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
