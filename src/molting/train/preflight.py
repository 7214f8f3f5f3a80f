"""The preflight (`molt check`): catch, before a training run is spent, the mistakes that waste one.

Reached through `run_preflight(config)`, which loads only the tokenizer and the model's config (never
the weights) and returns the preflight report (written as preflight.json):

- token budget: each example tokenized with the real tokenizer and chat template against max_length,
  and the assistant tokens truncation would lose (a 339-token system prompt in every example with max_length
  512 leaves 173 tokens for the question and the answer);
- inference budget: what the full inference prompt leaves for an answer (a 339-token prompt and a 30-token
  question leave 143 of 512);
- template/EOS round trip: every assistant turn's last supervised token is an end-of-turn token the model
  stops on, and inference prompts tokenize exactly as training does (turns ended with `<|endoftext|>` on a
  model that stops at `</s>` never learn to stop);
- optimizer steps: what the trainer will actually do, against a floor (79 examples, batch 1, grad_accum 8 and
  5 epochs are 50 steps: too few to learn a persona);
- memory: the predicted peak of loading and training (`memory_estimate`, from config.json alone) against
  the device's memory, and what would make it fit (Phi-3-mini's fp16 weights alone, about 7.6 GB, do not
  fit a 4 GB GPU).
"""

import math
import statistics
from typing import Any, TypedDict

from molting.card.claims import claims_in_text
from molting.card.persona import Persona, load_persona
from molting.card.suite import Suite, load_suite
from molting.config import RunConfig
from molting.data.dataset import Conversation, load_dataset
from molting.data.preference_pairs import GENERATED, PEOPLE, load_pairs
from molting.errors import UserError
from molting.findings import Finding
from molting.models.base_model import load_tokenizer
from molting.models.chat_format import encode_prompt, render, supervised, tokenize_for_training
from molting.models.resolve import resolve_base


class StepCount(TypedDict):
    """The optimizer steps a run takes (preflight.json's `steps`)."""

    examples: int
    batch_size: int
    grad_accum: int
    world_size: int
    steps_per_epoch: int
    epochs: float
    total_steps: int


class TokenBudget(TypedDict):
    """Every training example tokenized against max_length (preflight.json's `token_budget`)."""

    max_length: int
    examples: int
    max_tokens: int
    mean_tokens: float
    p95_tokens: int
    truncated_examples: int
    assistant_tokens_lost: int
    supervised_tokens: int
    max_supervised_tokens: int  # the most assistant tokens one example trains on (within max_length)
    total_tokens: int


class TemplateCheck(TypedDict):
    """The template/EOS round trip (preflight.json's `template`)."""

    eos_token: str
    eos_token_id: int
    generation_eos_ids: list[int]
    turns_checked: int
    turns_not_ending_in_eos: int
    inference_prompt_is_training_prefix: bool
    rendered_example: str


class InferenceBudget(TypedDict):
    """What the inference prompt and the longest question leave for an answer (`inference_budget`)."""

    train_system_prompt_tokens: int
    inference_system_prompt_tokens: int
    longest_question: str
    question_tokens: int
    inference_prompt_tokens: int
    answer_budget: int
    max_new_tokens: int
    context_window: int | None


class DatasetFacts(TypedDict):
    path: str
    conversations: int
    tags: dict[str, int]
    own_system_prompt: int


class EvalDataReport(TypedDict):
    """The held-out conversations of eval_data (preflight.json's `eval_data`)."""

    path: str
    conversations: int
    token_budget: TokenBudget
    eval_steps: int  # optimizer steps between two held-out losses
    evaluations: int  # held-out losses in the run: every eval_steps, and at the last step
    also_in_training: int  # held-out conversations whose turns (the system prompt aside) are in the data too


class PreflightReport(TypedDict):
    """`run_preflight`'s result, written as preflight.json."""

    ok: bool
    base_model: str
    dataset: DatasetFacts
    token_budget: TokenBudget
    inference_budget: InferenceBudget
    template: TemplateCheck
    trainable_tokens: dict[str, Any]  # molting.models.token_rows.plan_trainable_tokens: evidence, rows trained
    steps: StepCount
    memory: dict[str, Any] | None  # molting.train.memory_estimate's estimate, with the device and budget
    preference: dict[str, Any] | None  # the preference pairs' part (molting.data.preference_pairs)
    eval_data: EvalDataReport | None  # the held-out set, when molt.yaml names one
    findings: list[dict[str, Any]]
    examples: list[dict[str, Any]]  # per example: line, tokens, tokens per role, supervised, truncated, lost


def optimizer_steps(n_examples: int, batch_size: int, grad_accum: int, epochs: float, world_size: int = 1) -> StepCount:
    """The number of optimizer steps the Hugging Face Trainer takes (same rounding as its loop). Under
    torchrun / accelerate launch each of `world_size` processes takes every world_size-th batch."""
    batches_per_epoch = math.ceil(math.ceil(n_examples / batch_size) / world_size)
    steps_per_epoch = max(batches_per_epoch // grad_accum + int(batches_per_epoch % grad_accum > 0), 1)
    total = math.ceil(epochs * steps_per_epoch)
    return {
        "examples": n_examples,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "world_size": world_size,
        "steps_per_epoch": steps_per_epoch,
        "epochs": epochs,
        "total_steps": total,
    }


def check_forbidden_in_training(persona: Persona, conversations: list[Conversation]) -> list[Finding]:
    """A warning per trained answer that makes a forbidden claim, even negated: training on "o João não é
    meu filho" teaches "meu filho" (Kassner & Schütze 2020: small models learn the words, not the negation).
    A weight-0 answer is context, not trained on, and is not read."""
    findings = []
    for conv in conversations:
        for m in conv.messages:
            if not supervised(m):
                continue
            for found in claims_in_text(persona, m["content"]):
                if found.negated:
                    why = (
                        f"denies forbidden claim {found.claim!r} ({found.text!r}), and a negated statement in "
                        "supervised data tends to teach the statement itself: small models learn the words after "
                        "the negation, not the negation (Kassner & Schütze 2020, 'Negated and Misprimed Probes'): 15 "
                        "examples denying 'João é meu filho' make a small model say it more"
                    )
                else:
                    why = f"makes forbidden claim {found.claim!r} ({found.text!r}), so training teaches it"
                findings.append(
                    Finding(
                        "warning",
                        "negated_claims",
                        f"{conv.where}: the assistant's answer {why}. State the fact positively instead "
                        "and push the claim down with preference pairs: `molt augment CONFIG` writes both "
                        "(corrective.jsonl, pairs.jsonl; train with train.method: sft+dpo or orpo).",
                    )
                )
    return findings


def check_steps(steps: dict, min_steps: int, warmup_steps: int) -> list[Finding]:
    findings = []
    total = steps["total_steps"]
    if total < min_steps:
        findings.append(
            Finding(
                "warning",
                "steps",
                f"only {total} optimizer steps (ceil({steps['examples']} / ({steps['batch_size']} × "
                f"{steps['grad_accum']})) × {steps['epochs']} epochs), below the floor of {min_steps}: "
                "in so few steps a LoRA adapter learns almost nothing of the persona. Lower grad_accum or "
                "batch_size, add epochs or data.",
            )
        )
    if warmup_steps >= total:
        findings.append(
            Finding(
                "warning",
                "steps",
                f"warmup_steps ({warmup_steps}) ≥ total steps ({total}): the learning rate never reaches its "
                "set value. Lower train.warmup_steps.",
            )
        )
    return findings


def token_budget(
    tokenizer, conversations: list[Conversation], max_length: int, allow_truncation: bool, held_out: bool = False
) -> tuple[TokenBudget, list[dict], list[Finding]]:
    """Every example against max_length. `held_out`: the eval_data conversations, where a cut answer is not
    learnt wrong, only left out of the held-out loss (a warning)."""
    per_example = []
    findings = []
    split, split_tokens, whole_tokens = 0, 0, 0
    for conv, tokenized in _training_examples(tokenizer, conversations):
        if "prompt" in tokenized.role_tokens:  # one turn of a conversation split per assistant turn
            split += 1
            split_tokens += len(tokenized.input_ids)
        n = len(tokenized.input_ids)
        lost = sum(tokenized.assistant_mask[max_length:])
        per_example.append(
            {
                "file": conv.path,
                "line": conv.line,
                "tokens": n,
                **{f"{r}_tokens": c for r, c in tokenized.role_tokens.items()},
                "assistant_supervised": sum(tokenized.assistant_mask),
                "truncated": n > max_length,
                "assistant_tokens_lost": lost,
                "_tokenized": tokenized,
            }
        )
        if lost and held_out:
            findings.append(
                Finding(
                    "warning",
                    "eval_data",
                    f"{conv.where}: {n} tokens > max_length {max_length}; the held-out loss leaves out the {lost} "
                    "assistant tokens past it. Raise train.max_length or shorten the example.",
                )
            )
        elif lost:
            findings.append(
                Finding(
                    "warning" if allow_truncation else "error",
                    "token_budget",
                    f"{conv.where}: {n} tokens > max_length {max_length}; truncation would cut {lost} "
                    "assistant tokens, so the model learns to stop mid-answer. Raise train.max_length, shorten "
                    "the example, or pass --allow-truncation.",
                )
            )
    if split and not held_out:  # the same template splits the training data, and is reported there
        split_conversations = {(e["file"], e["line"]) for e in per_example if "prompt_tokens" in e}
        whole_tokens = sum(
            len(tokenizer(render(tokenizer, c.messages), add_special_tokens=False)["input_ids"])
            for c in conversations
            if (c.path, c.line) in split_conversations
        )
        findings.append(
            Finding(
                "warning",
                "template",
                "the chat template renders a conversation differently from its own prefixes (it rewrites earlier "
                f"turns when later ones follow), so {len(split_conversations)} conversation(s) were split into "
                f"{split} examples, one per assistant turn, each supervised on its last turn only: {split_tokens} "
                f"tokens to train on instead of {whole_tokens} (+{split_tokens - whole_tokens}), as each example "
                "repeats the conversation before its turn.",
            )
        )
    lengths = [e["tokens"] for e in per_example]
    summary: TokenBudget = {
        "max_length": max_length,
        "examples": len(per_example),
        "max_tokens": max(lengths),
        "mean_tokens": round(statistics.fmean(lengths), 1),
        "p95_tokens": sorted(lengths)[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)],
        "truncated_examples": sum(e["truncated"] for e in per_example),
        "assistant_tokens_lost": sum(e["assistant_tokens_lost"] for e in per_example),
        "supervised_tokens": sum(e["assistant_supervised"] for e in per_example),
        "max_supervised_tokens": max(e["assistant_supervised"] - e["assistant_tokens_lost"] for e in per_example),
        "total_tokens": sum(lengths),
    }
    return summary, per_example, findings


def _training_examples(tokenizer, conversations: list[Conversation]):
    """(conversation, tokenized example) pairs, as the trainer builds them (`tokenize_for_training`)."""
    for conv in conversations:
        for tokenized in tokenize_for_training(tokenizer, conv.messages):
            yield conv, tokenized


def check_template(
    tokenizer, model_eos_ids: set[int], examples: list[dict], conversations: list[Conversation]
) -> tuple[TemplateCheck, list[Finding]]:
    findings = []
    eos = tokenizer.eos_token
    bad_turns = []
    for example, conv in zip(examples, conversations, strict=True):
        tokenized = example["_tokenized"]
        for (start, end), (_, char_end) in zip(tokenized.assistant_turns, tokenized.assistant_chars, strict=True):
            last = tokenized.input_ids[end - 1] if end > start else None
            if last != tokenizer.eos_token_id:
                found = "nothing" if last is None else f"{tokenizer.convert_ids_to_tokens(last)!r} ({last})"
                bad_turns.append((conv.where, tokenized.text[max(0, char_end - 24) : char_end], found))
    if bad_turns:
        line, tail, found = bad_turns[0]
        findings.append(
            Finding(
                "error",
                "template",
                f"{len(bad_turns)} assistant turn(s) (first at {line}, ending {tail!r}) end with {found}, "
                f"not the end-of-turn token {eos!r} ({tokenizer.eos_token_id}) generation stops on: the model would "
                "never learn to stop, and generation would run on to max_new_tokens. Use the base's own chat "
                "template (drop `chat_template` from molt.yaml) or fix it.",
            )
        )
    if tokenizer.eos_token_id not in model_eos_ids:
        findings.append(
            Finding(
                "error",
                "template",
                f"the model's generation config stops on token ids {sorted(model_eos_ids)}, which do not include "
                f"the turn-ending {eos!r} ({tokenizer.eos_token_id}): generation would run past the end of a turn.",
            )
        )
    # Training and inference must tokenize the same way: the inference prompt (up to the assistant's
    # turn) must be a token-for-token prefix of the training sequence.
    conv = conversations[0]
    first_assistant = next(i for i, m in enumerate(conv.messages) if m["role"] == "assistant")
    prompt_ids = encode_prompt(tokenizer, conv.messages[:first_assistant])
    train_ids = examples[0]["_tokenized"].input_ids
    same_prefix = train_ids[: len(prompt_ids)] == prompt_ids
    if not same_prefix:
        findings.append(
            Finding(
                "error",
                "template",
                f"{conv.where}: the inference prompt does not tokenize as a prefix of the training "
                "sequence, so the model would be asked questions in a format it was not trained on.",
            )
        )
    sample = render(tokenizer, conv.messages)
    report: TemplateCheck = {
        "eos_token": eos,
        "eos_token_id": tokenizer.eos_token_id,
        "generation_eos_ids": sorted(model_eos_ids),
        "turns_checked": sum(len(e["_tokenized"].assistant_turns) for e in examples),
        "turns_not_ending_in_eos": len(bad_turns),
        "inference_prompt_is_training_prefix": same_prefix,
        "rendered_example": sample,
    }
    return report, findings


def embeddings_in_full(config: RunConfig) -> bool:
    """`lora.modules_to_save` trains the whole embedding matrix (the builtin bases' setting)."""
    return any(
        name in ("embed_tokens", "wte", "word_embeddings", "tok_embeddings") for name in config.lora.modules_to_save
    )


def check_token_rows(config: RunConfig, tokenizer) -> tuple[dict, list[Finding]]:
    """The chat template's tokens whose embedding row the base never trained, read from the local weights,
    and which `lora.trainable_tokens` will train; a warning when the end-of-turn row looks untrained and
    nothing would train it: LoRA alone cannot teach such a base to end a turn."""
    from molting.models.token_rows import local_embedding_matrices, plan_trainable_tokens

    in_full = embeddings_in_full(config)  # every row trains: nothing to check
    matrices = None if in_full else local_embedding_matrices(resolve_base(config.base_model))
    plan = plan_trainable_tokens(config.lora.trainable_tokens, tokenizer, matrices, in_full)
    findings = []
    untrained_eos = plan["untrained_end_of_turn"]
    if untrained_eos and tokenizer.eos_token_id not in plan["train_ids"]:
        findings.append(
            Finding(
                "warning",
                "template",
                f"the end-of-turn token looks never trained in this base: {untrained_eos[0]}. LoRA cannot move "
                "an embedding row, so the trained model would rarely end a turn and run on to max_new_tokens. "
                "Set lora.trainable_tokens to auto (the default) or list the token.",
            )
        )
    return plan, findings


def inference_budget(
    tokenizer, persona: Persona, suite: Suite, max_length: int, max_new_tokens: int, context_window: int | None
) -> tuple[InferenceBudget, list[Finding]]:
    def prompt_tokens(system: str, question: str) -> int:
        messages = [{"role": "system", "content": system.strip()}, {"role": "user", "content": question}]
        return len(encode_prompt(tokenizer, messages))

    longest = max(suite.questions, key=lambda q: len(tokenizer(q.question, add_special_tokens=False)["input_ids"]))
    question_tokens = len(tokenizer(longest.question, add_special_tokens=False)["input_ids"])
    train_prompt = len(tokenizer(persona.system_prompts.train.strip(), add_special_tokens=False)["input_ids"])
    infer_prompt = len(tokenizer(persona.system_prompts.inference.strip(), add_special_tokens=False)["input_ids"])
    full = prompt_tokens(persona.system_prompts.inference, longest.question)
    left = max_length - full
    findings = [
        Finding(
            "info",
            "inference_budget",
            f"system prompts: {train_prompt} tokens for training, {infer_prompt} for inference; the longest "
            f"suite question ({longest.id}, {question_tokens} tokens) with the inference prompt takes {full} "
            f"tokens, leaving {left} of max_length {max_length} for the answer.",
        )
    ]
    if left < max_new_tokens:
        findings.append(
            Finding(
                "warning",
                "inference_budget",
                f"generation.max_new_tokens is {max_new_tokens} but only {left} tokens are left after the prompt "
                f"within max_length {max_length}; answers that long were never trained, and are cut off. "
                "Raise train.max_length or shorten the inference prompt.",
            )
        )
    if context_window and full + max_new_tokens > context_window:
        findings.append(
            Finding(
                "error",
                "inference_budget",
                f"prompt ({full}) + max_new_tokens ({max_new_tokens}) exceeds the model's context window "
                f"({context_window}). Lower generation.max_new_tokens or shorten the inference prompt.",
            )
        )
    report: InferenceBudget = {
        "train_system_prompt_tokens": train_prompt,
        "inference_system_prompt_tokens": infer_prompt,
        "longest_question": longest.id,
        "question_tokens": question_tokens,
        "inference_prompt_tokens": full,
        "answer_budget": left,
        "max_new_tokens": max_new_tokens,
        "context_window": context_window,
    }
    return report, findings


def _model_facts(config: RunConfig, tokenizer) -> tuple[set[int], int | None]:
    """End-of-turn ids and context window from the model's config files, without loading weights."""
    from transformers import AutoConfig, GenerationConfig

    path = resolve_base(config.base_model)
    try:
        model_config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"base_model {config.base_model!r}: could not read its config.json ({e}).") from None
    try:
        gen = GenerationConfig.from_pretrained(path)
        eos = gen.eos_token_id
    except OSError:
        eos = model_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    return ids or {tokenizer.eos_token_id}, getattr(model_config, "max_position_embeddings", None)


def memory_check(
    config: RunConfig, longest_example: int, most_supervised: int | None = None
) -> tuple[dict, list[Finding]]:
    """Predicted peak memory of loading and training (from config.json alone) against the memory this
    machine's training device has, or `check.memory_gb`; what would make it fit when it does not.
    `most_supervised`: the most assistant tokens of one example, which sets what the fused LM head projects."""
    from molting.models.base_model import mixed_precision, pick_device, pick_dtype
    from molting.models.model_configs import model_config, shipped_config, shipped_ids
    from molting.train.memory_estimate import TrainingPlan, device_memory, estimate_memory, fit_suggestions, fits

    device = pick_device()
    dtype = pick_dtype(config.train.dtype, device)
    dtype_name = str(dtype).replace("torch.", "")
    lora_dropout = config.lora.dropout if config.lora.dropout is not None else (0.05 if device == "cuda" else 0.0)
    plan = TrainingPlan(
        device=device,
        weights_dtype=dtype_name,
        quantization=config.train.quantization,
        autocast=dtype_name == "float32" and mixed_precision(config.train.dtype, device, dtype) != "no",
        lora_r=config.lora.r,
        target_modules=config.lora.target_modules,
        modules_to_save=list(config.lora.modules_to_save),
        lora_dropout=lora_dropout,
        seq_len=min(longest_example, config.train.max_length),
        # ORPO runs the chosen and the rejected answer of each example in one forward pass
        batch_size=config.train.batch_size * (2 if config.train.method == "orpo" else 1),
        gradient_checkpointing=config.train.gradient_checkpointing,
        # SFT trains through TRL's fused LM head (molting.train.sft); the DPO and ORPO stages build the logits
        fused_head=config.train.method == "sft",
        supervised_fraction=min(1.0, most_supervised / longest_example) if most_supervised else 1.0,
    )
    model = model_config(config.base_model)
    estimate = estimate_memory(model, plan)
    available = device_memory(device)
    budget = config.check.memory_gb or available["free_gb"]
    at_max_length = estimate_memory(model, plan.but(seq_len=config.train.max_length))["peak_gb"]
    report = {
        **estimate,
        "peak_at_max_length_gb": at_max_length,
        "device": available,
        "budget_gb": budget,
        "budget_from": "check.memory_gb" if config.check.memory_gb else f"free {device} memory",
        "fits": fits(estimate["peak_gb"], budget),
    }
    where = "GPU memory" if device == "cuda" else "RAM"
    findings = [
        Finding(
            "info",
            "memory",
            f"predicted peak {estimate['peak_gb']:.2f} GB (loading {estimate['loading_peak_gb']:.2f}, training "
            f"{estimate['training_peak_gb']:.2f}; {estimate['parameters'] / 1e6:.1f} M parameters, "
            f"{estimate['trainable_parameters'] / 1e6:.2f} M trainable, batches of {plan.batch_size} × "
            f"{plan.seq_len} tokens) against {budget:.1f} GB ({report['budget_from']}).",
        )
    ]
    if not report["fits"]:
        smaller = {m: shipped_config(m) for m in shipped_ids() if m != config.base_model}
        suggestions = fit_suggestions(model, plan, budget * 0.95, smaller)
        report["suggestions"] = suggestions
        findings.append(
            Finding(
                "error",
                "memory",
                f"training {config.base_model} this way needs about {estimate['peak_gb']:.1f} GB but {where} has "
                f"{budget:.1f} GB ({report['budget_from']}): it would run out of memory. What would fit: "
                + ("; ".join(suggestions) if suggestions else "nothing molting can change here; use a larger device")
                + ".",
            )
        )
    elif not fits(at_max_length, budget):
        findings.append(
            Finding(
                "warning",
                "memory",
                f"fits with today's longest example, but examples as long as max_length "
                f"{config.train.max_length} would need {at_max_length:.1f} GB of the {budget:.1f} GB.",
            )
        )
    return report, findings


def _turns(conv: Conversation) -> str:
    """A conversation's turns without its system prompt: what makes two conversations the same example."""
    return repr([(m["role"], m["content"]) for m in conv.messages if m["role"] != "system"])


def eval_data_preflight(
    config: RunConfig, persona: Persona, tokenizer, conversations: list[Conversation], steps: StepCount
) -> tuple[EvalDataReport, list[Finding]]:
    """eval_data read as data.jsonl is (every bad line named), its examples against max_length (a cut answer
    only shortens what the loss measures: a warning), conversations that are in the training data too (their
    loss measures memorising), and how often the held-out loss is computed in the SFT stage's `steps`."""
    assert config.eval_data is not None
    held_out = load_dataset(config.eval_data, persona.system_prompts.train, "eval_data")
    budget, _, findings = token_budget(tokenizer, held_out, config.train.max_length, True, held_out=True)
    training = {_turns(c): c for c in conversations}
    repeated = [(c, training[_turns(c)]) for c in held_out if _turns(c) in training]
    for conv, twin in repeated[:5]:
        findings.append(
            Finding(
                "warning",
                "eval_data",
                f"{conv.where}: the same conversation as {twin.where} of the training data; its held-out loss "
                "measures memorising, not generalising. Remove it from one of the files (`molt data curate` "
                "splits a dataset without overlap).",
            )
        )
    every = config.train.eval_steps or steps["steps_per_epoch"]
    total = steps["total_steps"]
    evaluations = total // every + int(total % every > 0)
    findings.append(
        Finding(
            "info",
            "eval_data",
            f"eval_data: {len(held_out)} held-out conversations ({budget['supervised_tokens']} assistant tokens), "
            f"their loss every {every} optimizer steps"
            + ("" if config.train.eval_steps else " (once per epoch)")
            + f" and at the last: {evaluations} time(s) in {total} steps.",
        )
    )
    report: EvalDataReport = {
        "path": config.eval_data,
        "conversations": len(held_out),
        "token_budget": budget,
        "eval_steps": every,
        "evaluations": evaluations,
        "also_in_training": len(repeated),
    }
    return report, findings


def preference_preflight(config, persona, tokenizer, conversations: int = 0, world_size: int = 1) -> tuple[dict, list]:
    """The preference stage's part of the preflight: pairs parse, fit max_length, put no forbidden claim
    on the chosen side, and how many optimizer steps the stage takes. For train.method orpo the stage is
    the whole run, over the pairs and the `conversations` of data.jsonl together, with train's batch size
    and epochs; for sft+dpo it runs on one process over the pairs, with preference's."""
    findings = []
    pairs = load_pairs(config.preference_data, persona.system_prompts.train)
    pref = config.preference
    orpo = config.train.method == "orpo"
    batch = config.train.batch_size if orpo else pref.batch_size or config.train.batch_size
    epochs = config.train.epochs if orpo else pref.epochs
    examples = len(pairs) + conversations if orpo else len(pairs)
    longest, too_long = 0, []
    for pair in pairs:
        prompt_tokens = len(encode_prompt(tokenizer, pair.prompt))
        for side in (pair.chosen, pair.rejected):
            n = len(tokenizer(render(tokenizer, pair.prompt + side), add_special_tokens=False)["input_ids"])
            longest = max(longest, n)
            if n > config.train.max_length:
                too_long.append((pair.line, n, prompt_tokens))
        # the same test as the dashboard's at save time and augment's: a denial on the chosen side teaches too
        for found in claims_in_text(persona, pair.chosen[0]["content"]):
            findings.append(
                Finding(
                    "error",
                    "preference_data",
                    f"{config.preference_data}:{pair.line}: the chosen answer "
                    f"{'denies' if found.negated else 'makes'} forbidden claim {found.claim!r} ({found.text!r}); "
                    "preference training would teach it. Swap or fix the pair.",
                )
            )
    for line, n, prompt_tokens in too_long[:5]:
        findings.append(
            Finding(
                "error",
                "preference_data",
                f"{config.preference_data}:{line}: {n} tokens > max_length {config.train.max_length} (prompt "
                f"{prompt_tokens}); the answer would be cut. Raise train.max_length or shorten the pair.",
            )
        )
    steps = optimizer_steps(examples, batch, config.train.grad_accum, epochs, world_size if orpo else 1)
    what = f"{len(pairs)} pairs + {conversations} conversations (as pairs)" if orpo else f"{len(pairs)} pairs"
    findings.append(
        Finding(
            "info",
            "steps",
            f"preference stage ({config.train.method}): {what}, {steps['total_steps']} optimizer steps "
            f"(ceil({examples} / ({batch} × {config.train.grad_accum}"
            + (f" × {world_size} processes" if orpo and world_size > 1 else "")
            + f")) × {epochs} epochs).",
        )
    )
    sources: dict[str, int] = {}
    for pair in pairs:
        sources[pair.source or "unknown"] = sources.get(pair.source or "unknown", 0) + 1
    report = {
        "path": config.preference_data,
        "method": config.train.method,
        "pairs": len(pairs),
        **({"conversations": conversations} if orpo else {}),
        "sources": sources,
        "from_people": sum(pair.source in PEOPLE for pair in pairs),  # chosen written by a person (dashboard)
        "generated": sum(pair.source in GENERATED for pair in pairs),  # from the card or a run's failed answers
        "max_tokens": longest,
        "too_long": len(too_long),
        "steps": steps,
    }
    return report, findings


def run_preflight(config: RunConfig, allow_truncation: bool | None = None, world_size: int = 1) -> PreflightReport:
    """Run every check; the report's `ok` is false when any finding is an error. A quantised load this
    machine cannot do is a `UserError` before anything (tokenizer included) is loaded."""
    from molting.models.base_model import pick_device, quantization_unavailable

    # torch is imported (for the device) only when there is a quantised load to check: the card, suite and data
    # are checked first, so an error in them is reported in a fraction of a second
    quantized = config.train.quantization != "none"
    problem = quantization_unavailable(config.train.quantization, pick_device()) if quantized else None
    if problem:
        raise UserError(problem)
    allow = config.check.allow_truncation if allow_truncation is None else allow_truncation
    persona = load_persona(config.persona)
    suite = load_suite(config.suite, persona)
    conversations = load_dataset(config.data, persona.system_prompts.train)
    tokenizer = load_tokenizer(config.base_model, config.chat_template)
    eos_ids, context_window = _model_facts(config, tokenizer)

    budget, examples, findings = token_budget(tokenizer, conversations, config.train.max_length, allow)
    by_line = {(conv.path, conv.line): conv for conv in conversations}
    # a conversation split per turn comes once per turn
    example_conversations = [by_line[e["file"], e["line"]] for e in examples]
    template, template_findings = check_template(tokenizer, eos_ids, examples, example_conversations)
    trainable_tokens, token_findings = check_token_rows(config, tokenizer)
    findings += token_findings
    infer, infer_findings = inference_budget(
        tokenizer, persona, suite, config.train.max_length, config.generation.max_new_tokens, context_window
    )
    preference = None
    if config.preference_data:  # the preference pairs: format, budget, wrong side, steps of their stage
        preference, preference_findings = preference_preflight(
            config, persona, tokenizer, len(conversations), world_size
        )
        findings += preference_findings
    if config.train.method == "orpo":  # one stage over pairs and conversations together: its steps are the run's
        steps = preference["steps"]
    else:
        steps = optimizer_steps(
            len(examples), config.train.batch_size, config.train.grad_accum, config.train.epochs, world_size
        )
    held_out = None
    if config.eval_data:  # the SFT stage's held-out loss; ORPO has none (config.load_run_config refuses it)
        held_out, held_out_findings = eval_data_preflight(config, persona, tokenizer, conversations, steps)
        findings += held_out_findings
    # held-out batches are as large as training's, and need less memory at the same length (no gradients)
    longest = max(budget["max_tokens"], held_out["token_budget"]["max_tokens"] if held_out else 0)
    most_supervised = max(
        budget["max_supervised_tokens"], held_out["token_budget"]["max_supervised_tokens"] if held_out else 0
    )
    memory, memory_findings = memory_check(config, longest, most_supervised)
    findings += (
        template_findings
        + infer_findings
        + check_steps(steps, config.check.min_steps, config.train.warmup_steps)
        + memory_findings
    )
    findings += check_forbidden_in_training(persona, conversations)
    tags: dict[str, int] = {}
    for conv in conversations:
        for tag in conv.tags:
            tags[tag] = tags.get(tag, 0) + 1
    for e in examples:
        del e["_tokenized"]
    return {
        "ok": not any(f.level == "error" for f in findings),
        "base_model": config.base_model,
        "dataset": {
            "path": config.data,
            "conversations": len(conversations),
            "tags": tags,
            "own_system_prompt": sum(c.own_system_prompt for c in conversations),
        },
        "token_budget": budget,
        "inference_budget": infer,
        "template": template,
        "trainable_tokens": trainable_tokens,
        "steps": steps,
        "memory": memory,
        "preference": preference,
        "eval_data": held_out,
        "findings": [f.as_dict() for f in findings],
        "examples": examples,
    }
