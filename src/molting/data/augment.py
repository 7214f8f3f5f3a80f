"""Corrective data from the persona card (`molt augment`): positive restatements for SFT and preference
pairs for DPO, instead of negated examples.

Training on 15 examples like "João não é meu filho" makes a small model say "meu filho" more: supervised
training on a negated statement teaches the statement (Kassner & Schütze 2020). The remedy is to state facts
positively and to push wrong answers down with a preference objective (DPO, Rafailov et al. 2023). So:

- corrective.jsonl (SFT, tagged `corrective`): each fact's text and `restatements` answering each of its
  `questions`, in a few templated framings of the card's language; each relationship in both directions
  ("Quem é João?" → "João é …", "Com quem você trabalha?" → "Trabalho com João Figueiredo, …"). Every
  answer is checked against every forbidden claim, plain and negated (`claim_detection`); one that makes
  a claim is dropped and reported, never written.
- pairs.jsonl (preference pairs, TRL's conversational format): for every probe of every forbidden claim
  that is not `held_out`, chosen = prefix + right, rejected = prefix + wrong (source "card"); with
  `from_eval`, a run's failed answers (rejected = what the model said, chosen = the suite's reference,
  source "eval") and the pairs saved by the dashboard in RUN/eval/*/preference_pairs.jsonl.

Output is deduplicated and the same for the same card and seed. Reached through `augment`, or through
`augment_source` from what the command line names (a persona card, or a molt.yaml naming one).
"""

import random
from pathlib import Path

from molting.card.claims import claims_in_text
from molting.card.persona import Persona, load_persona
from molting.card.suite import load_suite
from molting.config import load_resolved_config, load_run_config
from molting.errors import UserError
from molting.io import read_json, read_jsonl_rows, write_jsonl_atomic
from molting.paths import EvalPaths, RunPaths
from molting.yaml_source import load_yaml

# Framings of a statement, per language: the same fact in slightly different answers.
FRAMINGS = {
    "pt": ["{s}", "Resumindo: {s}", "Na prática: {s}", "{s} Simples assim."],
    "en": ["{s}", "In short: {s}", "Put simply: {s}", "{s} That's it."],
}
GENERIC_QUESTION = {"pt": "Me conta algo sobre você.", "en": "Tell me something about yourself."}
# Relationship templates, both directions: (question, answer). {alias} short name, {name} full name.
RELATIONSHIP_TEMPLATES = {
    "pt": [
        ("Quem é {alias}?", "{alias} é {relation}."),
        ("Me fala sobre {name}.", "{name} é {relation}."),
        ("Com quem você trabalha?", "Trabalho com {name}, {relation}."),
        ("Qual é a sua relação com {alias}?", "{alias} é {relation}."),
    ],
    "en": [
        ("Who is {alias}?", "{alias} is {relation}."),
        ("Tell me about {name}.", "{name} is {relation}."),
        ("Who do you work with?", "I work with {name}, {relation}."),
        ("What is your relationship with {alias}?", "{alias} is {relation}."),
    ],
}
# Where a pair's chosen answer comes from, as `molt augment` lists them: a person's or generated.
PAIR_SOURCES = {
    "card": "generated from the card's probes",
    "eval": "generated from failed answers of the evaluations (the suite's reference as chosen)",
    "dashboard": "written by a person in the dashboard",
}
FAILED_TOTAL = 5  # an eval answer at or below this total (of 10), or with a forbidden claim, is a failure


def _sentence(text: str) -> str:
    text = text.strip()
    return text + "." if text and text[-1].isalnum() else text


def restatement_examples(persona: Persona, seed: int, per_fact: int) -> list[dict]:
    """Candidate SFT examples: every (question, statement, framing) of each fact, `per_fact` of them
    drawn with the seed, and every relationship template."""
    rng = random.Random(seed)
    framings = FRAMINGS[persona.language]
    examples = []
    for fact in persona.facts:
        questions = fact.questions or [GENERIC_QUESTION[persona.language]]
        statements = [fact.text, *fact.restatements]
        combos = [(q, f.format(s=_sentence(s))) for q in questions for s in statements for f in framings]
        for question, answer in rng.sample(combos, min(per_fact, len(combos))):
            examples.append({"question": question, "answer": answer, "tags": ["corrective", f"fact:{fact.id}"]})
    for rel in persona.relationships:
        for alias in [rel.name, *rel.aliases][:2]:  # the full name and the usual short one
            for question, answer in RELATIONSHIP_TEMPLATES[persona.language]:
                values = {"alias": alias, "name": rel.name, "relation": rel.relation.strip().rstrip(".")}
                examples.append(
                    {
                        "question": question.format(**values),
                        "answer": answer.format(**values),
                        "tags": ["corrective", "relationship"],
                    }
                )
    return examples


def _pair(
    system: str, question: str, chosen: str, rejected: str, source: str, pair_id: str, origin: dict | None = None
) -> dict:
    pair = {
        "prompt": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "source": source,
        "id": pair_id,
    }
    return {**pair, "origin": origin} if origin else pair


def card_pairs(persona: Persona) -> list[dict]:
    system = persona.system_prompts.train.strip()
    pairs = []
    for claim in persona.forbidden_claims:
        for probe in claim.probes:
            if probe.held_out:  # kept for measuring, never trained on
                continue
            chosen = _sentence(probe.prefix + probe.right)
            rejected = _sentence(probe.prefix + probe.wrong)
            pairs.append(_pair(system, probe.question, chosen, rejected, "card", probe.id))
    return pairs


def eval_pairs(persona: Persona, suite, run_dir: Path) -> tuple[list[dict], list[str]]:
    """Pairs from a run's failed answers and from the dashboard's saved pairs, with notes on what was read."""
    from molting.data.preference_pairs import load_pairs

    system = persona.system_prompts.train.strip()
    pairs, notes = [], []
    evals = RunPaths(run_dir).evals
    eval_dirs = sorted(EvalPaths(p) for p in evals.glob("*") if p.is_dir()) if evals.is_dir() else []
    if not eval_dirs:
        raise UserError(f"{run_dir}/eval: no evaluations to harvest. Run one first: molt eval {run_dir}.")
    for eval_dir in eval_dirs:
        if eval_dir.responses.is_file() and eval_dir.scores.is_file():
            # scores.json leaves unanswered rows out, so they are left out here too before pairing the two
            rows = [r for r in read_jsonl_rows(eval_dir.responses, required=("id",)) if r.get("response") is not None]
            questions = read_json(eval_dir.scores)["questions"]
            failed = 0
            for row, scored in zip(rows, questions, strict=False):
                claims = [e for e in scored["evidence"] if e["detector"].startswith("forbidden_claim:")]
                question = suite.by_id.get(row["id"])
                if question is None or not question.reference or not (claims or scored["total"] <= FAILED_TOTAL):
                    continue
                failed += 1
                answer_id = row.get("answer_id", row["id"])
                pairs.append(
                    _pair(
                        system,
                        row.get("prompt") or question.question,  # a paraphrase is asked as itself
                        question.reference,
                        row["response"],
                        "eval",
                        f"eval:{eval_dir.name}:{answer_id}",
                        {"run": Path(run_dir).name, "eval": eval_dir.name, "answer_id": answer_id},
                    )
                )
            notes.append(f"{eval_dir.name}: {failed} failed answers of {len(rows)}")
        saved = eval_dir.preference_pairs
        if saved.is_file():
            people = load_pairs(saved, system)
            for p in people:
                pairs.append(
                    _pair(
                        p.prompt[0]["content"],
                        p.prompt[-1]["content"],
                        p.chosen[0]["content"],
                        p.rejected[0]["content"],
                        "dashboard",
                        p.id or f"dashboard:{eval_dir.name}:{p.line}",
                        p.origin,
                    )
                )
            n = len(people)
            notes.append(
                f"{eval_dir.name}: {n} pair{'' if n == 1 else 's'} a person saved in the dashboard ({saved.name})"
            )
    return pairs, notes


def augment(
    persona: Persona,
    out_dir: Path,
    seed: int = 0,
    per_fact: int = 8,
    from_eval: Path | None = None,
    suite=None,
    overwrite: bool = False,
) -> dict:
    """Write out_dir/corrective.jsonl and out_dir/pairs.jsonl; returns counts and what was dropped."""
    out_dir = Path(out_dir)
    sft_path, pairs_path = out_dir / "corrective.jsonl", out_dir / "pairs.jsonl"
    for path in (sft_path, pairs_path):
        if path.exists() and not overwrite:
            raise UserError(f"{path} exists. Pass --overwrite to replace it, or --out another folder.")
    dropped = []
    sft, seen = [], set()
    for ex in restatement_examples(persona, seed, per_fact):
        key = (ex["question"], ex["answer"])
        if key in seen:
            continue
        seen.add(key)
        found = claims_in_text(persona, ex["answer"])
        if found:  # a restatement that states or denies a forbidden claim would teach it
            dropped.append({"kind": "sft", "answer": ex["answer"], "claims": [f.claim for f in found]})
            continue
        sft.append(
            {
                "messages": [
                    {"role": "user", "content": ex["question"]},
                    {"role": "assistant", "content": ex["answer"]},
                ],
                "tags": ex["tags"],
            }
        )
    pairs = card_pairs(persona)
    notes = []
    if from_eval is not None:
        harvested, notes = eval_pairs(persona, suite, Path(from_eval))
        pairs += harvested
    kept, seen = [], set()
    for pair in pairs:
        key = (pair["prompt"][-1]["content"], pair["chosen"][0]["content"], pair["rejected"][0]["content"])
        if key in seen:
            continue
        seen.add(key)
        # With rpo_alpha the chosen answer is also trained by NLL, so it must be as clean as SFT data.
        found = claims_in_text(persona, pair["chosen"][0]["content"])
        if found:
            dropped.append({"kind": "pair", "id": pair["id"], "claims": [f.claim for f in found]})
            continue
        kept.append(pair)
    write_jsonl_atomic(sft_path, sft)
    write_jsonl_atomic(pairs_path, kept)
    with_pairs = {c.category for c in persona.forbidden_claims if any(not p.held_out for p in c.probes)}
    return {
        "sft": str(sft_path),
        "pairs": str(pairs_path),
        "sft_examples": len(sft),
        "pair_count": len(kept),
        "pair_sources": {s: sum(p["source"] == s for p in kept) for s in PAIR_SOURCES},
        "categories_with_pairs": sorted(with_pairs),
        "claims_without_probes": [c.id for c in persona.forbidden_claims if not c.probes],
        "dropped": dropped,
        "notes": notes,
        "seed": seed,
    }


def augment_source(
    source: str | Path,
    out_dir: str | Path | None = None,
    seed: int = 0,
    per_fact: int = 8,
    from_eval: str | Path | None = None,
    overwrite: bool = False,
) -> dict:
    """`molt augment SOURCE`: SOURCE is a persona card, or a run config (it has `base_model`) whose persona
    and suite are used. Harvesting a run's evaluations needs the suite: the config's, or else the one the
    run was trained with. Writes next to the card unless `out_dir` is given."""
    doc = load_yaml(source)
    if isinstance(doc.data, dict) and "base_model" in doc.data:
        config = load_run_config(source)
        persona_path, suite_path = config.persona, config.suite
    else:
        persona_path, suite_path = Path(source), None
    persona = load_persona(persona_path)
    suite = None
    if from_eval:
        suite = load_suite(suite_path or load_resolved_config(Path(from_eval)).suite, persona)
    return augment(
        persona,
        Path(out_dir) if out_dir else Path(persona_path).parent,
        seed,
        per_fact,
        Path(from_eval) if from_eval else None,
        suite,
        overwrite,
    )
