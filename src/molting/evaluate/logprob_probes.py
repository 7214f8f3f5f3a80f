"""Log-probability probes (`molt probe RUN`, and part of `molt eval`): does the model prefer the right
continuation to the forbidden one?

For each probe of each forbidden claim in the persona card (`forbidden_claims[].probes`), the prompt is
the card's inference system prompt and the probe's question, rendered with the model's chat template,
followed by the start of the assistant's answer (`prefix`, e.g. "O João é"). The model is teacher-forced
through two continuations, `right` (" meu colega") and `wrong` (" meu filho"), and the margin is
log p(right) − log p(wrong), in total and per token. No sampling, so it is deterministic and costs
seconds; it is what shows a negative example learned backwards (training on "O João não é meu filho"
can raise p("meu filho"): the model learns the words, not the negation). Reached through `probe_margins`
(a loaded model) and `probe_and_write` (its report as logprob.json), which `molt eval` and
`molting.evaluate.run.probe_run` (a run dir) call.
"""

import statistics
from pathlib import Path

from molting.card.persona import Persona
from molting.io import write_json_atomic
from molting.models.chat_format import render
from molting.paths import EvalPaths


def _continuation_logprobs(model, tokenizer, context: str, continuations: list[str]) -> list[list[float]]:
    """Per-token log-probabilities of each continuation after `context`.

    Tokenized as lm-evaluation-harness does: the whole text, minus the tokens of the context alone, so a
    space that the tokenizer attaches to the next word is scored with the continuation it starts."""
    import torch

    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    out = []
    for continuation in continuations:
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        # Tokens can merge across the boundary; the continuation is then what follows the context's length.
        start = min(len(context_ids), len(whole) - 1)
        ids = torch.tensor([whole], device=model.device)
        with torch.no_grad():
            # the output projection only at the positions that predict the continuation: the whole prompt's
            # logits were positions × vocabulary floats (about 1 GB for a 1,000-token prompt on a 262k vocabulary)
            keep = len(whole) - start + 1
            logits = model(input_ids=ids, logits_to_keep=keep).logits[0, -keep:-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        target = ids[0, start:]
        out.append(logprobs.gather(1, target[:, None])[:, 0].tolist())
    return out


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"probes": 0, "mean_margin": None, "mean_margin_per_token": None, "positive_fraction": None}
    return {
        "probes": len(rows),
        "mean_margin": round(statistics.fmean(r["margin"] for r in rows), 4),
        "mean_margin_per_token": round(statistics.fmean(r["margin_per_token"] for r in rows), 4),
        "positive_fraction": round(sum(r["margin"] > 0 for r in rows) / len(rows), 4),
    }


def probe_margins(model, tokenizer, persona: Persona, on_probe=None) -> dict:
    """Margins of every probe in the card: per probe, per claim, and over the run (all probes, and the
    held-out ones alone). The logprob.json format."""
    model.eval()
    system = persona.system_prompts.inference.strip()
    rows = []
    for claim in persona.forbidden_claims:
        for probe in claim.probes:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": probe.question}]
            context = render(tokenizer, messages, add_generation_prompt=True) + probe.prefix
            right, wrong = _continuation_logprobs(model, tokenizer, context, [probe.right, probe.wrong])
            rows.append(
                {
                    "id": probe.id,
                    "claim": claim.id,
                    "category": claim.category,
                    "held_out": probe.held_out,
                    "question": probe.question,
                    "prefix": probe.prefix,
                    "right": probe.right,
                    "wrong": probe.wrong,
                    "right_logprob": round(sum(right), 4),
                    "wrong_logprob": round(sum(wrong), 4),
                    "right_tokens": len(right),
                    "wrong_tokens": len(wrong),
                    "margin": round(sum(right) - sum(wrong), 4),
                    "margin_per_token": round(sum(right) / len(right) - sum(wrong) / len(wrong), 4),
                }
            )
            if on_probe:
                on_probe()
    claims = {}
    for claim in persona.forbidden_claims:
        mine = [r for r in rows if r["claim"] == claim.id]
        if mine:
            claims[claim.id] = {"category": claim.category, **_summary(mine)}
    return {
        "version": 1,
        "system_prompt": "inference",
        "summary": {**_summary(rows), "held_out": _summary([r for r in rows if r["held_out"]])},
        "claims": claims,
        "probes": rows,
    }


def probe_and_write(
    model, tokenizer, persona: Persona, out_dir: Path, about: dict, show_progress: bool = False
) -> dict:
    """Run the probes and write out_dir/logprob.json (atomically), with `about` (eval id, model) on top;
    returns the report."""
    from molting.progress import bar

    total = sum(len(c.probes) for c in persona.forbidden_claims)
    with bar("log-prob probes", total, unit="probes", disable=not show_progress) as progress:
        report = probe_margins(model, tokenizer, persona, on_probe=progress.advance)
    report = {**about, **report}
    write_json_atomic(EvalPaths(Path(out_dir)).logprob, report)
    return report
