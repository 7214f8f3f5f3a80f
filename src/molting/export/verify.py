"""`molt export --verify`: does the exported model answer as the trained one did?

Reached through `verify_export(run_dir, target)` after `export.export_run`. Every suite question, asked
with the persona's inference prompt, is answered greedily (argmax, no repetition penalty: this compares
the weights, not the samplers) by

- the adapter: the base in fp32 with the PEFT adapter unmerged, as training left it;
- the merged model from RUN/export/merged, with its own tokenizer and generation_config;
- every GGUF of the export, through llama-cpp-python (the llama.cpp the converter came from), twice: from
  the adapter's own prompt tokens (`gguf-f16`: did the weights survive?) and as served (`gguf-f16-served`:
  the prompt rendered with the chat template stored in the GGUF and tokenized as llama.cpp serves it,
  special tokens parsed, one BOS as llama-server gives it: did the template and tokenizer survive?), each
  stopped at llama.cpp's end-of-generation tokens.

Per question it records whether each exported model's tokens are identical to the adapter's, the first
token where they differ, whether the prompt tokens were identical (and where they first differ), and the
rubric scores (molting.evaluate.rubric) of each answer. Checks: merged == adapter token for token; every GGUF f16
answer from the adapter's prompt tokens matches the adapter for its first `F16_PREFIX` tokens (or all of
it when shorter), with the served run's prompt and answer differences reported beside it; a quantised
GGUF reports its score change; for Ollama, the Modelfile's TEMPLATE renders every suite prompt identically
to the chat template and its stops cover every end-of-turn token. Those are checks of the export ("of":
"export" in verify.json). Checks of the answers ("of": "answers", `answer_checks`): no answer contains
template tokens or a second turn, and at least one ended at an end-of-turn token (so the stop was seen to
work). Results go to RUN/export/<target>/verify.json.
"""

import json
import time
from pathlib import Path

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.config import load_resolved_config
from molting.errors import UserError
from molting.evaluate.rubric import score_responses, special_token_texts
from molting.export.export import RECORD, load_adapter_model, saved_tokenizer
from molting.export.llama_cpp_tools import import_llama_cpp, load_gguf
from molting.export.ollama_modelfile import chat_segments, parse_modelfile, template_mismatches
from molting.io import write_json_atomic
from molting.models.chat_format import encode_prompt
from molting.paths import RunPaths
from molting.train.run_lock import holds_run_lock

F16_PREFIX = 8  # an f16 GGUF answer must match the adapter's for at least this many first tokens


def _hf_answer(model, tokenizer, messages: list[dict], eos: set[int], max_new: int) -> dict:
    import torch

    prompt = encode_prompt(tokenizer, messages)
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
            max_new_tokens=max_new,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=1.0,
            eos_token_id=sorted(eos),
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos),
        )
    new = out[0, len(prompt) :].tolist()
    stop = next((k for k, t in enumerate(new) if t in eos), None)
    kept = new if stop is None else new[:stop]
    return {
        "prompt_tokens": prompt,
        "tokens": kept,
        "text": tokenizer.decode(kept, skip_special_tokens=False).strip(),
        "finish_reason": "length" if stop is None else "stop",
    }


def _hf_answers(model, tokenizer, prompts, eos, max_new, advance) -> list[dict]:
    answers = []
    for messages in prompts:
        answers.append(_hf_answer(model, tokenizer, messages, eos, max_new))
        advance()
    return answers


def _gguf_answers(
    path: Path, prompts: list[list[dict]], reference_prompts: list[list[int]], max_new: int, advance
) -> tuple[list[dict], list[dict], dict]:
    """Answers from a GGUF through llama-cpp-python, twice: from the adapter's own prompt tokens (do the
    weights survive?) and as served (the GGUF's chat template, llama.cpp's tokenizer: does the template?)."""
    llama_cpp = import_llama_cpp()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = load_gguf(path)
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise UserError(f"{path}: the GGUF carries no chat template (tokenizer.chat_template).")
    vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def token_text(i: int) -> str:
        return llm.detokenize([i], special=True).decode("utf-8", errors="replace") if i >= 0 else ""

    def answer(prompt: list[int]) -> dict:
        llm.reset()  # evaluate every prompt whole: no KV-cache reuse between questions
        tokens, finish = [], "length"
        for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            tokens.append(token)
            if len(tokens) >= max_new:
                break
        text = llm.detokenize(tokens, special=True).decode("utf-8", errors="replace").strip()
        advance()
        return {"prompt_tokens": prompt, "tokens": tokens, "text": text, "finish_reason": finish}

    formatter = Jinja2ChatFormatter(
        template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos())
    )
    same_prompt = [answer(list(ids)) for ids in reference_prompts]
    served = []
    adds_bos = llm._model.add_bos_token()  # llama.cpp's own decision: it adds Gemma's whatever the GGUF says
    bos_text = token_text(llm.token_bos())
    for messages in prompts:
        rendered = formatter(messages=messages).prompt
        # As llama-server and llama-cli (--jinja) do: where llama.cpp adds a BOS itself, a BOS the template
        # wrote at the very start is dropped (common/chat.cpp), so that the prompt has one; then special
        # tokens are parsed and the BOS added (llama_tokenize's add_special).
        if adds_bos and bos_text and rendered.startswith(bos_text):
            rendered = rendered[len(bos_text) :]
        served.append(answer(llm.tokenize(rendered.encode("utf-8"), add_bos=True, special=True)))
    eog = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    info = {"end_of_generation_tokens": {str(i): token_text(i) for i in eog}}
    llm.close()
    return same_prompt, served, info


def _compare(reference: list[int], other: list[int]) -> dict:
    common = min(len(reference), len(other))
    prefix = next((k for k in range(common) if reference[k] != other[k]), common)
    identical = reference == other
    return {"identical": identical, "first_difference": None if identical else prefix, "matching_prefix": prefix}


def _leaks(text: str, markers: list[str]) -> list[str]:
    return [m for m in markers if m in text]


def _leading(ids: list[int], token: int) -> int:
    return next((k for k, t in enumerate(ids) if t != token), len(ids))


def _found(rows: list[dict]) -> list[str]:
    return sorted({m for a in rows for m in a["leaked_template_tokens"]})


def answer_checks(per_model: dict[str, dict], answers: dict[str, list[dict]], max_new: int) -> list[dict]:
    """The checks of what each exported model answered ("of": "answers"), beside those of the export's files
    ("of": "export"): no template tokens or second turn, and an end of turn where the adapter ends its turns.
    An export can be faithful and still fail these (a barely trained model quantised, or served from a
    prompt tokenized a little differently, takes another greedy path); the detail then says how the adapter
    itself did, so a model problem is not taken for an export problem."""
    checks = []
    adapter = per_model["adapter"]
    n = len(answers["adapter"])
    adapter_stopped = adapter["stopped_at_end_of_turn"]
    for name, summary in per_model.items():
        if name == "adapter":
            continue
        # No template tokens and no second turn in any answer: always required.
        checks.append(
            {
                "check": f"{name} writes no template tokens or second turn",
                "ok": summary["answers_with_template_tokens"] == 0,
                "detail": f"{summary['answers_with_template_tokens']}/{n} answers contain template or special tokens"
                + (f" ({', '.join(found[:8])})" if (found := _found(answers[name])) else "")
                + f" (adapter: {adapter['answers_with_template_tokens']}/{n})",
                "gating": True,
                "of": "answers",
            }
        )
        # And it ends at an end-of-turn token where the adapter does. Required where the export is fed the
        # adapter's own prompt tokens (the answers are comparable); as served, the prompt may tokenize
        # differently (see the served detail), the answers differ from there, and a model that rambles
        # past max_new_tokens on other answers says nothing either way: reported, not gating.
        ended = summary["stopped_at_end_of_turn"]
        checks.append(
            {
                "check": f"{name} stops at end of turn",
                "ok": ended > 0 or adapter_stopped == 0,
                "detail": f"{ended}/{n} answers ended at an end-of-turn token (adapter: {adapter_stopped}/{n}), "
                f"{summary['hit_max_new_tokens']} hit max_new_tokens ({max_new})"
                + (", none ended: raise --max-new-tokens to confirm" if not ended else ""),
                "gating": not name.endswith("-served"),
                "of": "answers",
            }
        )
    return checks


@holds_run_lock("molt export --verify")
def verify_export(
    run_dir: str | Path, target: str, max_new_tokens: int | None = None, show_progress: bool = True
) -> dict:
    """Verify RUN's export to `target` (see the module docstring). `max_new_tokens` defaults to the run's."""
    from transformers import AutoModelForCausalLM

    from molting.progress import bar

    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    merged_dir = paths.export("merged")
    if not (merged_dir / RECORD).is_file():
        raise UserError(f"{merged_dir}: nothing exported yet. Run: molt export {run_dir} --to {target}.")
    config = load_resolved_config(run_dir)
    persona = load_persona(config.persona)
    suite = load_suite(config.suite, persona)
    system = persona.system_prompts.inference.strip()
    prompts = [
        [{"role": "system", "content": system}, {"role": "user", "content": q.question}] for q in suite.questions
    ]
    max_new = max_new_tokens or config.generation.max_new_tokens

    ggufs: dict[str, Path] = {}
    if target in ("gguf", "ollama"):
        record = json.loads((paths.export("gguf") / RECORD).read_text())
        for kind, summary in record["files"].items():
            ggufs[f"gguf-{kind}"] = paths.export("gguf") / summary["file"]
    started = time.time()
    answers: dict[str, list[dict]] = {}
    extra: dict[str, dict] = {}
    total = len(prompts) * (2 + 2 * len(ggufs))
    with bar("verifying the export", total, unit="answers", disable=not show_progress) as progress:

        def advance():
            progress.advance()

        model, tokenizer = load_adapter_model(run_dir, merge=False)
        from molting.models.base_model import eos_token_ids

        answers["adapter"] = _hf_answers(model, tokenizer, prompts, eos_token_ids(tokenizer, model), max_new, advance)
        del model
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype="float32").eval()
        merged_tokenizer = saved_tokenizer(merged_dir)  # the merged folder's own, as written (the Modelfile's too)
        merged_eos = eos_token_ids(merged_tokenizer, merged)
        answers["merged"] = _hf_answers(merged, merged_tokenizer, prompts, merged_eos, max_new, advance)
        del merged
        reference_prompts = [a["prompt_tokens"] for a in answers["adapter"]]
        for name, path in ggufs.items():
            same, served, info = _gguf_answers(path, prompts, reference_prompts, max_new, advance)
            answers[name], answers[f"{name}-served"] = same, served
            extra[name] = extra[f"{name}-served"] = info

    segments = chat_segments(tokenizer)
    # the turn markup, and every special token of the base (Gemma's 6,000-odd <unusedN> among them: what a
    # model whose turn-end row is untrained writes where its turn should end)
    special = special_token_texts(tokenizer)
    markers = sorted(
        {p.strip() for p in (*segments.before.values(), *segments.after.values()) if p.strip()} | set(special)
    )
    per_model: dict[str, dict] = {}
    for name, rows in answers.items():
        scored = [
            {"id": q.id, "response": a["text"], "finish_reason": a["finish_reason"]}
            for q, a in zip(suite.questions, rows, strict=True)
        ]
        scores = score_responses(persona, suite.by_id, scored, special_tokens=special)
        for a, s in zip(rows, scores["questions"], strict=True):
            a["score"] = s["total"]
            a["leaked_template_tokens"] = _leaks(a["text"], markers)
        per_model[name] = {
            "average_score": scores["average"],
            "stopped_at_end_of_turn": sum(a["finish_reason"] == "stop" for a in rows),
            "hit_max_new_tokens": sum(a["finish_reason"] == "length" for a in rows),
            "answers_with_template_tokens": sum(bool(a["leaked_template_tokens"]) for a in rows),
            **extra.get(name, {}),
        }
    reference = answers["adapter"]
    for name, rows in answers.items():
        if name == "adapter":
            continue
        for r, a in zip(reference, rows, strict=True):
            a.update(_compare(r["tokens"], a["tokens"]))
            a["identical"] = a["identical"] and r["finish_reason"] == a["finish_reason"]
            diff = _compare(r["prompt_tokens"], a["prompt_tokens"])
            a["prompt_tokens_identical"] = diff["identical"]
            a["first_prompt_difference"] = diff["first_difference"]
        first_prompt_diffs = sorted({a["first_prompt_difference"] for a in rows} - {None})
        per_model[name].update(
            {
                "identical_answers": sum(a["identical"] for a in rows),
                "fewest_matching_first_tokens": min(a["matching_prefix"] for a in rows),
                "identical_prompts": sum(a["prompt_tokens_identical"] for a in rows),
                "first_prompt_differences_at": first_prompt_diffs,
                "score_change": round(per_model[name]["average_score"] - per_model["adapter"]["average_score"], 3),
            }
        )

    checks = []

    def check(name: str, ok: bool, detail: str, gating: bool = True) -> None:
        # A non-gating check is reported (as a note when it does not hold) but does not fail the export.
        checks.append({"check": name, "ok": bool(ok), "detail": detail, "gating": gating, "of": "export"})

    n = len(prompts)
    merged_summary = per_model["merged"]
    check(
        "merged == adapter, token for token",
        merged_summary["identical_answers"] == n and merged_summary["identical_prompts"] == n,
        f"{merged_summary['identical_answers']}/{n} answers identical; "
        f"{merged_summary['identical_prompts']}/{n} prompts tokenized identically",
    )
    for name in ggufs:
        summary, served = per_model[name], per_model[f"{name}-served"]
        short = [
            q.id
            for q, r, a in zip(suite.questions, reference, answers[name], strict=True)
            if a["matching_prefix"] < min(F16_PREFIX, len(r["tokens"]))
        ]
        served_detail = (
            f"served (the GGUF's chat template, llama.cpp's tokenizer): {served['identical_prompts']}/{n} "
            f"prompts tokenized identically"
            + (
                f" (first differences at token {served['first_prompt_differences_at']})"
                if served["first_prompt_differences_at"]
                else ""
            )
            + f", {served['identical_answers']}/{n} answers identical, fewest matching first tokens "
            f"{served['fewest_matching_first_tokens']}, score {served['score_change']:+.2f}"
        )
        bos = merged_tokenizer.bos_token_id
        extra_bos = [
            q.id
            for q, r, a in zip(suite.questions, reference, answers[f"{name}-served"], strict=True)
            if bos is not None and _leading(a["prompt_tokens"], bos) != _leading(r["prompt_tokens"], bos)
        ]
        check(
            f"{name} served prompt begins as the training prompt (no BOS added or lost)",
            not extra_bos,
            f"{n - len(extra_bos)}/{n} served prompts begin with the trained prompt's "
            f"{_leading(reference[0]['prompt_tokens'], bos) if bos is not None else 0} BOS"
            + (
                f"; {', '.join(extra_bos)} differ (the GGUF's tokenizer.ggml.add_bos_token adds one the template "
                "already writes)"
                if extra_bos
                else ""
            ),
        )
        if name == "gguf-f16":
            check(
                f"gguf f16 matches the adapter on the first {F16_PREFIX} tokens of every answer",
                not short,
                f"from the adapter's prompt tokens: {summary['identical_answers']}/{n} answers identical, fewest "
                f"matching first tokens {summary['fewest_matching_first_tokens']}"
                + (f", short of {F16_PREFIX}: {', '.join(short)}" if short else "")
                + f"; {served_detail}",
            )
        else:
            check(
                f"{name} score change reported",
                True,
                f"average score {summary['average_score']:.2f} vs adapter {per_model['adapter']['average_score']:.2f} "
                f"({summary['score_change']:+.2f}), {summary['identical_answers']}/{n} answers identical; "
                f"{served_detail}",
            )
    if target == "ollama":
        modelfile = parse_modelfile((paths.export("ollama") / "Modelfile").read_text(encoding="utf-8"))
        mismatches = template_mismatches(modelfile["TEMPLATE"], merged_tokenizer, prompts)
        check(
            "Modelfile TEMPLATE renders every suite prompt as the chat template does",
            not mismatches,
            f"{n - len(mismatches)}/{n} prompts identical (rendered by molting.export.go_template)",
        )
        wanted = {merged_tokenizer.convert_ids_to_tokens(i) for i in merged_eos}
        stops = set(modelfile["PARAMETER"].get("stop", []))
        check(
            "Modelfile stops cover every end-of-turn token",
            wanted <= stops,
            f"end-of-turn tokens {sorted(wanted)}; stops {sorted(stops)}",
        )
        check(
            "Modelfile SYSTEM is the inference prompt",
            modelfile.get("SYSTEM") == system,
            f"{len(modelfile.get('SYSTEM', ''))} characters",
        )
    checks += answer_checks(per_model, answers, max_new)

    questions = []
    for i, q in enumerate(suite.questions):
        entry = {"id": q.id, "question": q.question, "answers": {}}
        for name, rows in answers.items():
            a = rows[i]
            entry["answers"][name] = {k: v for k, v in a.items() if k != "prompt_tokens"}
        questions.append(entry)
    result = {
        "target": target,
        "ok": all(c["ok"] for c in checks if c["gating"]),
        "checks": checks,
        "decoding": f"greedy, no repetition penalty, at most {max_new} new tokens",
        "models": per_model,
        "questions": questions,
        "seconds": round(time.time() - started, 1),
    }
    write_json_atomic(paths.export(target) / "verify.json", result)
    return result
