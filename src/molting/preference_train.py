"""The preference stage of `molt train` (train.method: sft+dpo): TRL's DPOTrainer on the SFT adapter.

Reached from `train.train_run` after SFT, with the trained PEFT model. DPOTrainer, given a PEFT model
that already holds an adapter, copies it as a frozen "ref" adapter and trains the "default" one, so the
reference is the SFT model and the result is one LoRA adapter, as with SFT alone. The NLL term on the
chosen answer (RPO) is TRL 1.16's `loss_type=["sigmoid", "sft"]` weighted by `preference.rpo_alpha`
(TRL 1.16 has no `rpo_alpha` argument any more). Rows go to the same train_log.jsonl, with stage "dpo"
and DPO's metrics (rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies).
"""

import time
from pathlib import Path


def dpo_stage(model, tokenizer, config, persona, run_dir: Path, preflight: dict, precision: str, step_offset, callback):
    """Train the adapter of `model` with DPO on config.preference_data; returns (model, manifest section).
    `callback(total_steps, step_offset)` makes the logging/progress callback of the stage."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from molting.preference_pairs import load_pairs

    pref = config.preference
    pairs = load_pairs(config.preference_data, persona.system_prompts.train)
    dataset = Dataset.from_list([p.as_trl() for p in pairs])
    total_steps = preflight["preference"]["steps"]["total_steps"]
    stage_callback = callback(total_steps, step_offset)
    rpo = pref.rpo_alpha > 0
    args = DPOConfig(
        output_dir=str(Path(run_dir) / "checkpoints"),
        per_device_train_batch_size=pref.batch_size or config.train.batch_size,
        gradient_accumulation_steps=config.train.grad_accum,
        num_train_epochs=pref.epochs,
        learning_rate=pref.learning_rate,
        lr_scheduler_type=config.train.lr_scheduler,
        warmup_steps=pref.warmup_steps,
        logging_steps=config.train.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to=[],
        seed=config.train.seed,
        data_seed=config.train.seed,
        max_length=config.train.max_length,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        # DPOConfig turns checkpointing on by default; molting keeps the user's setting.
        gradient_checkpointing=config.train.gradient_checkpointing,
        use_cpu=model.device.type == "cpu",
        disable_tqdm=True,
        dataloader_num_workers=0,
        beta=pref.beta,
        loss_type=["sigmoid", "sft"] if rpo else ["sigmoid"],
        loss_weights=[1.0, pref.rpo_alpha] if rpo else None,
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
        "final": {k: v for k, v in last.items() if k == "loss" or k.startswith(("rewards/", "logps/"))},
        "seconds": round(seconds, 1),
    }
