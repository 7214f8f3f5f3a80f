"""Preference training in `molt train`: the DPO stage of train.method sft+dpo (TRL's DPOTrainer on the
SFT adapter), and the dataset and trainer of train.method orpo (TRL's ORPOTrainer, one stage; see
`orpo_rows` and `orpo_trainer` below).

The DPO stage is reached from `train.train_run` after SFT, with the trained PEFT model. DPOTrainer, given a PEFT model
that already holds an adapter, copies it as a frozen "ref" adapter and trains the "default" one, so the
reference is the SFT model and the result is one LoRA adapter, as with SFT alone. The NLL term on the
chosen answer (RPO) is TRL 1.16's `loss_type=["sigmoid", "sft"]` weighted by `preference.rpo_alpha`
(TRL 1.16 has no `rpo_alpha` argument any more). Rows go to the same train_log.jsonl, with stage "dpo"
and DPO's metrics (rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies).
"""

import time


def dpo_stage(model, tokenizer, config, persona, preflight: dict, common_args: dict, step_offset, callback):
    """Train the adapter of `model` with DPO on config.preference_data; returns (model, manifest section).
    `callback(total_steps, step_offset)` makes the logging/progress callback of the stage."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from molting.data.preference_pairs import load_pairs
    from molting.train.trainer_args import as_the_trainer_holds, extra_args_for

    pref = config.preference
    pairs = load_pairs(config.preference_data, persona.system_prompts.train)
    dataset = Dataset.from_list([p.as_trl() for p in pairs])
    total_steps = preflight["preference"]["steps"]["total_steps"]
    stage_callback = callback(total_steps, step_offset)
    rpo = pref.rpo_alpha > 0
    # SFT's TrainingArguments (schedule, precision, seeds, ranks), with the preference stage's own batch,
    # epochs, learning rate and warm-up, and no checkpoints: the stage is short and restarts from SFT's.
    args = DPOConfig(
        **{
            **common_args,
            "per_device_train_batch_size": pref.batch_size or config.train.batch_size,
            "num_train_epochs": pref.epochs,
            "learning_rate": pref.learning_rate,
            "warmup_steps": pref.warmup_steps,
            "save_strategy": "no",
        },
        beta=pref.beta,
        loss_type=["sigmoid", "sft"] if rpo else ["sigmoid"],
        loss_weights=[1.0, pref.rpo_alpha] if rpo else None,
        **extra_args_for(DPOConfig, config.train.extra_args),
    )
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[stage_callback]
    )
    trainer.remove_callback(PrinterCallback)
    started = time.time()
    result = trainer.train()
    seconds = time.time() - started
    model = trainer.model
    # The frozen copy DPO trained against is not part of the result.
    model.set_adapter("default")
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    rows = stage_callback.rows
    last = rows[-1] if rows else {}
    return model, {
        "method": config.train.method,
        "trainer": "trl.DPOTrainer",
        "pairs": len(pairs),
        "optimizer_steps": result.global_step,
        "beta": pref.beta,
        "rpo_alpha": pref.rpo_alpha,
        "loss_type": args.loss_type,
        "train_loss_mean": round(result.training_loss, 4),
        "extra_args": as_the_trainer_holds(args, config.train.extra_args),
        "final": {k: v for k, v in last.items() if k == "loss" or k.startswith(("rewards/", "logps/"))},
        "seconds": round(seconds, 1),
    }


# --- train.method: orpo --------------------------------------------------------------------------------------


def orpo_rows(tokenizer, pairs, conversations) -> list[dict]:
    """ORPO's training rows, tokenized here rather than by ORPOTrainer: the preference pairs, then every
    data.jsonl conversation as a pair whose rejected answer is its chosen one (its last assistant turn).

    For such a pair the odds-ratio term has zero gradient (chosen and rejected log-odds are the same
    tensor values, so their gradients cancel): the conversation gets only ORPO's NLL term, which is SFT on
    its last assistant turn. Earlier assistant turns of a multi-turn conversation are context, not
    supervised, unlike in SFT. Tokens come from `chat_format.tokenize_conversation`, as in SFT: the base's
    own chat template, no BOS or EOS added beyond what the template writes (ORPOTrainer's own tokenize_row
    would prepend BOS and append EOS after the template's trailing newline), labels on the answer up to and
    including its end-of-turn token.
    """
    from molting.models.chat_format import encode_prompt, supervised, tokenize_conversation

    examples = [(p.prompt, p.chosen, p.rejected) for p in pairs]
    for conv in conversations:
        last = max(i for i, m in enumerate(conv.messages) if supervised(m))  # a weight-0 answer is context
        answer = [conv.messages[last]]
        examples.append((conv.messages[:last], answer, answer))
    rows = []
    for prompt, chosen, rejected in examples:
        prompt_ids = encode_prompt(tokenizer, prompt)
        row = {"prompt_input_ids": prompt_ids, "prompt_attention_mask": [1] * len(prompt_ids)}
        for side, answer in (("chosen", chosen), ("rejected", rejected)):
            tokenized = tokenize_conversation(tokenizer, prompt + answer)
            start, end = tokenized.assistant_turns[-1]
            ids = tokenized.input_ids[:end]
            row[f"{side}_input_ids"] = ids
            row[f"{side}_attention_mask"] = [1] * end
            row[f"{side}_labels"] = [-100] * start + ids[start:]
        rows.append(row)
    return rows


def orpo_trainer(model, tokenizer, config, rows: list[dict], lora, common_args: dict, callbacks: list):
    """TRL's ORPOTrainer with a fresh LoRA adapter (`lora`, as SFT's) on the base, over `orpo_rows`.
    `common_args` are the TrainingArguments SFT would get (batch, epochs, learning rate, schedule, saving);
    preference.beta is ORPO's lambda, the weight of the odds-ratio term."""
    import os

    import torch.nn.functional as F
    from datasets import Dataset

    # ORPO lives in trl.experimental in TRL 1.16; the pinned version is what is tested, so its warning that
    # the API may change is not for the user of molt train.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    from trl.experimental.utils import pad_to_length

    class Trainer(ORPOTrainer):
        def tokenize_row(self, feature, model=None):
            return feature  # rows come tokenized by orpo_rows

        def concatenated_forward(self, model, batch):
            # TRL computes ORPO's NLL term over prompt and answer; the paper's (and SFT's) is over the answer
            # only, so it is recomputed here from the chosen logits and labels (the prompt labelled -100).
            out = super().concatenated_forward(model, batch)
            chosen_logits = out[2]  # logits of the chosen rows, shifted: position t predicts token t + 1
            labels = pad_to_length(batch["chosen_labels"], chosen_logits.shape[1] + 1, pad_value=-100)[:, 1:]
            nll = F.cross_entropy(chosen_logits.flatten(0, 1), labels.flatten().to(chosen_logits.device))
            return (*out[:4], nll, *out[5:])

    from molting.train.trainer_args import extra_args_for

    args = ORPOConfig(
        **common_args,
        beta=config.preference.beta,
        disable_dropout=False,  # LoRA dropout as in SFT
        remove_unused_columns=False,
        **extra_args_for(ORPOConfig, config.train.extra_args),
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=callbacks,
    )
