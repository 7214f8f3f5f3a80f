"""LoRA training (`molt train`): TRL's SFTTrainer on PEFT adapters, loss on assistant tokens only.

Reached through `train_run(config, run_dir)`. The preflight runs first and stops the run on any error.
Conversations are tokenized by `chat_format.tokenize_conversation` (the base's own chat template, every
assistant turn supervised up to and including its end-of-turn token) and handed to SFTTrainer as a
pre-tokenized dataset with `assistant_masks`, from which TRL builds the labels. The run directory gets
train_log.jsonl (one line per logging step, appended as training goes), adapter/ (safetensors with the
tokenizer and chat template, moved into place only when complete) and manifest.json.
train.method sft+dpo adds a DPO stage after SFT (preference_train.dpo_stage); train.method orpo trains in
one stage with ORPOTrainer instead of SFTTrainer over the preference pairs and the conversations
(preference_train.orpo_rows), with everything else (checkpoints, resume, ranks, log, saving) as for SFT.
train.extra_args go to each stage's config (trainer_args); the manifest records them as the trainer held them,
with the optimizer it built.
With `eval_data` the SFT stage gets the held-out conversations, tokenized the same way, as SFTTrainer's
eval_dataset: the trainer computes their assistant-token loss every train.eval_steps and at the last step, and
each lands in train_log.jsonl as a line with `eval_loss` (no `loss`). The DPO stage does not use them.
"""

import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from molting.card.persona import load_persona
from molting.config import RunConfig
from molting.data.dataset import load_dataset
from molting.errors import UserError
from molting.io import replace_dir_atomic, sha256_file, write_json_atomic, write_text_atomic
from molting.models.base_model import load_model, load_tokenizer, mixed_precision, pick_device
from molting.models.chat_format import tokenize_for_training
from molting.paths import RunPaths
from molting.train.checkpoints import (
    checkpoint_marker_callback,
    complete_checkpoints,
    newest_complete_checkpoint,
    remove_incomplete_checkpoints,
    truncate_log,
)
from molting.train.manifest import git_commit, inputs_record, machine, peak_memory_mb, versions
from molting.train.preflight import run_preflight
from molting.train.run_lock import LOCK_FILES, run_lock
from molting.train.trainer_args import as_the_trainer_holds, extra_args_for


def write_preflight(report: dict, run_dir: Path) -> None:
    write_json_atomic(RunPaths(run_dir).preflight, report)


def preflight_errors(report: dict) -> list[str]:
    return [f["message"] for f in report["findings"] if f["level"] == "error"]


def save_resolved_config(config: RunConfig, run_dir: Path) -> None:
    import yaml

    header = "# Resolved config of this run: every default filled in, paths absolute.\n"
    write_text_atomic(
        RunPaths(run_dir).config, header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    )


def _epoch_of(row: dict) -> int:
    return max(1, math.ceil(row["epoch"] - 1e-9))


def loss_by_epoch(log: list[dict]) -> list[dict]:
    """Mean logged loss within each epoch, the last logged loss of it (the loss at the epoch's end), and the
    last held-out loss of it (None without eval_data)."""
    epochs: dict[int, list[float]] = {}
    held_out: dict[int, float] = {}
    for row in log:
        if "loss" in row:
            epochs.setdefault(_epoch_of(row), []).append(row["loss"])
        if "eval_loss" in row:
            held_out[_epoch_of(row)] = row["eval_loss"]  # the epoch's last one stays
    return [
        {
            "epoch": e,
            "mean_loss": round(sum(v) / len(v), 4),
            "end_loss": round(v[-1], 4),
            "end_eval_loss": held_out.get(e),
        }
        for e, v in sorted(epochs.items())
    ]


def held_out_loss(log: list[dict]) -> dict | None:
    """The held-out loss over a run (the `eval_loss` lines of its log): how many, the first, the last and the
    lowest with its step and epoch. None without eval_data."""
    rows = [r for r in log if "eval_loss" in r]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["eval_loss"])
    return {
        "evaluations": len(rows),
        "first": rows[0]["eval_loss"],
        "final": rows[-1]["eval_loss"],
        "best": best["eval_loss"],
        "best_step": best["step"],
        "best_epoch": best["epoch"],
    }


def _log_and_progress_callback(
    log_path: Path,
    total_steps: int,
    device: str,
    show_progress: bool,
    rows: list[dict],
    elapsed_offset: float,
    stage: str = "sft",
    step_offset: int = 0,
):
    from transformers import TrainerCallback

    from molting.progress import bar

    class LogAndProgress(TrainerCallback):
        """Appends one JSON line per logging step and drives a progress bar (on rank 0 only): live in a terminal,
        a plain line every half minute in a log (molting.progress).

        `rows` holds the log kept from before a resume; elapsed_s goes on from where it stopped."""

        def __init__(self):
            self.start = time.monotonic() - elapsed_offset
            self.rows: list[dict] = list(rows)
            self.progress = bar(
                "training" if stage == "sft" else f"training ({stage})",
                total_steps,
                unit="steps",
                disable=not show_progress,
            )

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress.completed = state.global_step  # resumed from a checkpoint: counts from there
            self.progress.start()

        def on_step_end(self, args, state, control, **kwargs):
            self.progress.update(completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not state.is_world_process_zero:
                return
            if "eval_loss" in logs:  # the trainer's evaluation of eval_data: a line of its own
                self._append(
                    {
                        "stage": stage,
                        "step": step_offset + state.global_step,
                        "epoch": round(state.epoch or 0.0, 4),
                        "eval_loss": round(logs["eval_loss"], 4),
                        "elapsed_s": round(time.monotonic() - self.start, 2),
                    }
                )
                self.progress.update(note=f"held-out loss {logs['eval_loss']:.3f}")
                return
            if "loss" not in logs:
                return
            row = {
                "stage": stage,
                # A later stage (DPO after SFT) continues the step count, so train_log.jsonl stays in order.
                "step": step_offset + state.global_step,
                "epoch": round(state.epoch or 0.0, 4),
                "loss": round(logs["loss"], 4),
                "lr": logs.get("learning_rate"),
                "grad_norm": logs.get("grad_norm"),
                "elapsed_s": round(time.monotonic() - self.start, 2),
                **peak_memory_mb(device),
                # DPO's and ORPO's metrics: rewards/{chosen,rejected,margins,accuracies}, logps/{chosen,rejected},
                # and ORPO's nll_loss, log_odds_ratio, log_odds_chosen
                **{
                    k: round(v, 4)
                    for k, v in logs.items()
                    if k.startswith(("rewards/", "logps/", "log_odds", "nll_loss"))
                },
            }
            self._append(row)
            self.progress.update(note=f"loss {row['loss']:.3f}")

        def _append(self, row: dict) -> None:
            self.rows.append(row)
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

        def on_train_end(self, args, state, control, **kwargs):
            self.progress.stop()

    return LogAndProgress()


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process: set by torchrun / accelerate launch, (0, 1) when run alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _check_same_config(config: RunConfig, run_dir: Path) -> None:
    """A resumed run must train exactly what the interrupted one did (same steps, data order, schedule)."""
    import yaml

    path = RunPaths(run_dir).config
    if not path.is_file():
        return
    before = _flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    now = _flatten(config.to_dict())
    differ = [
        f"{k} ({before.get(k)!r} -> {now.get(k)!r})"
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k)
    ]
    if differ:
        raise UserError(
            [
                f"--resume continues the run in {run_dir} with the config it started with; these fields differ:",
                *differ,
                "Resume with the same config and --set values, or start over with --overwrite.",
            ]
        )


OVERWRITE_STAGING = ".overwrite"  # RUN/.overwrite: where `--overwrite` trains the run that will replace RUN's


def train_run(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool = True,
    allow_truncation: bool | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    """Train, or with `resume` continue from the newest complete checkpoint. Under torchrun / accelerate
    launch every rank trains; only rank 0 holds the run-directory lock and writes run files.

    `overwrite` on a run directory that holds anything trains the new run in RUN/.overwrite and moves it in
    only once it is complete (`_replace_run`): a crash, a Ctrl-C or a config that fails leaves the old run
    whole (adapter, evaluations, report and the config they came from). `resume` continues such an
    interrupted overwrite from its newest checkpoint."""
    if resume and overwrite:
        raise UserError("--resume continues a run and --overwrite starts it over: pass one of them.")
    rank, _ = process_rank()
    run_dir = Path(run_dir)
    staging = run_dir / OVERWRITE_STAGING
    staged = (overwrite and _holds_a_run(run_dir)) or (resume and bool(complete_checkpoints(staging / "checkpoints")))
    target = staging if staged else run_dir
    in_place_overwrite = overwrite and not staged  # nothing there to keep
    if rank != 0:
        return _train(config, target, False, allow_truncation, in_place_overwrite, resume, run_dir.name)
    with run_lock(run_dir):
        if overwrite and staged:
            shutil.rmtree(staging, ignore_errors=True)  # an earlier overwrite that never completed
        manifest = _train(config, target, show_progress, allow_truncation, in_place_overwrite, resume, run_dir.name)
        if staged:
            _replace_run(staging, run_dir)
        return manifest


def _holds_a_run(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(p.name not in (*LOCK_FILES, OVERWRITE_STAGING) for p in run_dir.iterdir())


def _replace_run(staging: Path, run_dir: Path) -> None:
    """Move the complete new run from `staging` into `run_dir` in place of everything there (the lock files
    stay: their holder is this process). The old entries go to RUN/.replaced first, deleted last; every move
    is a rename within one folder, so this takes milliseconds."""
    trash = run_dir / ".replaced"
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    for entry in list(run_dir.iterdir()):
        if entry.name not in (*LOCK_FILES, OVERWRITE_STAGING, trash.name):
            os.replace(entry, trash / entry.name)
    for entry in list(staging.iterdir()):
        os.replace(entry, run_dir / entry.name)
    staging.rmdir()
    shutil.rmtree(trash)


def _trainable_tokens(config: RunConfig, tokenizer, model) -> dict:
    """`lora.trainable_tokens` decided on the loaded weights (the preflight could only read local files),
    with PEFT's `trainable_token_indices` under "peft_indices": the input embedding's rows, and the output
    head's too when it is not tied to them (a tied head follows the embedding in PEFT)."""
    from molting.models.token_rows import model_embedding_matrices, plan_trainable_tokens
    from molting.train.preflight import embeddings_in_full

    in_full = embeddings_in_full(config)
    matrices = None if in_full else model_embedding_matrices(model)
    plan = plan_trainable_tokens(config.lora.trainable_tokens, tokenizer, matrices, in_full)
    ids = plan["train_ids"]
    indices = None
    if ids:
        names = {id(m): n for n, m in model.named_modules()}
        indices = {names[id(model.get_input_embeddings())].rsplit(".", 1)[-1]: ids}
        if matrices and "output" in matrices:
            indices[names[id(model.get_output_embeddings())].rsplit(".", 1)[-1]] = ids
    plan["peft_indices"] = indices
    return plan


def _check_tracker(config: RunConfig) -> None:
    """A tracker whose package is missing is a UserError saying what to install, before anything loads."""
    import importlib.util

    tracker = config.train.report_to
    if tracker != "none" and importlib.util.find_spec(tracker) is None:
        extra = " (or: pip install 'molting[tracking]')" if tracker == "tensorboard" else ""
        raise UserError(f"train.report_to: {tracker}: its package is not installed. pip install {tracker}{extra}.")


def _tracker_callbacks(config: RunConfig, paths: RunPaths, main_process: bool) -> list:
    """`train.report_to`: TensorBoard writes into RUN/tensorboard (transformers' own default is under the
    output directory, which molting prunes when training succeeds); the other trackers go through the
    trainer's `report_to`."""
    if config.train.report_to != "tensorboard" or not main_process:
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(paths.tensorboard)))]


def _give_token_wrappers_a_bias(model) -> None:
    """TRL 1.16's fused LM-head loss reads `lm_head.weight` and `lm_head.bias`; PEFT 0.21's
    TrainableTokensWrapper around an output head answers `weight` (the rows merged with their trained
    deltas) but raises AttributeError on `bias`. Its own forward applies no bias, so a head without one
    gets `bias = None` as a plain attribute (no parameter is registered: the adapter's files are unchanged)."""
    import torch
    from peft.utils.other import TrainableTokensWrapper

    for module in model.modules():
        if isinstance(module, TrainableTokensWrapper) and isinstance(module.original_module, torch.nn.Linear):
            if module.original_module.bias is None:
                object.__setattr__(module, "bias", None)


@contextmanager
def head_at_supervised_positions_only() -> Iterator[None]:
    """While training: TRL's fused LM head projects only the positions that have a label, on every device.

    TRL 1.16's SFTTrainer computes the loss without the full logits tensor: the head runs in tiles over the
    hidden states. It projects only the supervised positions where Triton runs it (CUDA, XPU with Triton
    installed), but every position elsewhere, CPU included, to keep tile shapes fixed for compilers (Neuron).
    On a 262,144-token vocabulary (Gemma 3) the head is most of a step, and molting supervises the assistant's
    tokens only (about a third of them on the example persona), so on a CPU most of that work was thrown away.
    Nothing here compiles tiles, so the compact path (the same tiles over the supervised rows only, in torch
    ops when Triton is absent) is used everywhere. Same loss and gradients: the unsupervised positions'
    log-probabilities were zeroed before. bench/train.py measures the difference.
    TRL decides this in `trl.trainer.utils._use_triton`, read on each forward; it is swapped for the duration
    and put back after, and a TRL without that name fails here, loudly, rather than training slowly."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton  # an AttributeError here means TRL moved it: update this function

    def compact(device) -> bool:
        return device.type in ("cpu", "cuda", "xpu", "mps") or original(device)

    trl_utils._use_triton = compact
    try:
        yield
    finally:
        trl_utils._use_triton = original


def _sft_rows(tokenizer, conversations) -> list[dict]:
    """SFTTrainer's pre-tokenized rows: one per conversation, or one per assistant turn where the template
    needs it (`tokenize_for_training`), with the mask of the tokens the loss is on."""
    rows = []
    for conv in conversations:
        for tokenized in tokenize_for_training(tokenizer, conv.messages):
            rows.append({"input_ids": tokenized.input_ids, "assistant_masks": tokenized.assistant_mask})
    return rows


def _train(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool,
    allow_truncation: bool | None,
    overwrite: bool,
    resume: bool,
    name: str,
) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    rank, world_size = process_rank()
    main_process = rank == 0
    paths = RunPaths(run_dir)
    checkpoints = paths.checkpoints
    if paths.adapter.exists() and not overwrite:
        raise UserError(
            f"{run_dir} already holds a trained run"
            + (" (training finished; there is nothing to resume)" if resume else "")
            + ". Choose another --name, or pass --overwrite to replace it (its evaluations, report and exports "
            "go with it, once the new run is complete)."
        )
    if complete_checkpoints(checkpoints) and not (resume or overwrite):
        raise UserError(
            f"{run_dir} holds checkpoints of an interrupted run. Continue it with --resume, or start over "
            "with --overwrite."
        )
    if resume:
        _check_same_config(config, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report = run_preflight(config, allow_truncation, world_size=world_size)
    if main_process:
        write_preflight(report, run_dir)
    errors = preflight_errors(report)
    if errors:
        raise UserError(["molt check found errors; fix them before training:", *errors])
    _check_tracker(config)

    log_path = paths.train_log
    checkpoint = newest_complete_checkpoint(checkpoints) if resume else None
    kept_rows: list[dict] = []
    if main_process:
        if checkpoint:
            remove_incomplete_checkpoints(checkpoints)
            kept_rows = truncate_log(log_path, checkpoint[0])
        else:
            shutil.rmtree(checkpoints, ignore_errors=True)  # partial saves of a run that never completed one
            log_path.unlink(missing_ok=True)
        save_resolved_config(config, run_dir)
        shutil.rmtree(run_dir / ".adapter.partial", ignore_errors=True)

    persona = load_persona(config.persona)
    conversations = load_dataset(config.data, persona.system_prompts.train)
    held_out = load_dataset(config.eval_data, persona.system_prompts.train, "eval_data") if config.eval_data else []
    tokenizer = load_tokenizer(config.base_model, config.chat_template)
    orpo = config.train.method == "orpo"  # one stage, ORPOTrainer instead of SFTTrainer, same run otherwise
    stage = "orpo" if orpo else "sft"

    device = pick_device()
    torch.manual_seed(config.train.seed)
    model = load_model(config.base_model, config.train.dtype, device, config.train.quantization)
    dtype = model.dtype
    precision = mixed_precision(config.train.dtype, device, dtype)
    if config.train.quantization != "none":
        from peft import prepare_model_for_kbit_training

        # casts norms to fp32 and enables input grads, so LoRA trains on the frozen quantised base
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.train.gradient_checkpointing)
    dropout = config.lora.dropout if config.lora.dropout is not None else (0.05 if device == "cuda" else 0.0)
    token_plan = _trainable_tokens(config, tokenizer, model)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
        modules_to_save=config.lora.modules_to_save or None,
        trainable_token_indices=token_plan.pop("peft_indices"),
    )
    steps = report["steps"]["total_steps"]  # for orpo the preflight counts the joined dataset
    callback = _log_and_progress_callback(
        log_path,
        steps,
        device,
        show_progress and main_process,
        kept_rows,
        kept_rows[-1]["elapsed_s"] if kept_rows else 0.0,
        stage,
    )
    callbacks = [callback, checkpoint_marker_callback(checkpoints, config.train.save_total_limit)]
    callbacks += _tracker_callbacks(config, paths, main_process)
    save_steps = config.train.save_steps
    common_args = dict(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.train.batch_size,
        gradient_accumulation_steps=config.train.grad_accum,
        num_train_epochs=config.train.epochs,
        learning_rate=config.train.learning_rate,
        lr_scheduler_type=config.train.lr_scheduler,
        warmup_steps=config.train.warmup_steps,
        weight_decay=config.train.weight_decay,
        logging_steps=config.train.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=None,  # CheckpointMarker prunes, after marking, so a complete checkpoint always remains
        report_to=[] if config.train.report_to in ("none", "tensorboard") else [config.train.report_to],
        seed=config.train.seed,
        data_seed=config.train.seed,
        max_length=config.train.max_length,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=config.train.gradient_checkpointing,
        use_cpu=device == "cpu",
        ddp_backend="gloo" if device == "cpu" and world_size > 1 else None,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if orpo:
        from molting.data.preference_pairs import load_pairs
        from molting.train.preference import orpo_rows, orpo_trainer

        pairs = load_pairs(config.preference_data, persona.system_prompts.train)
        rows = orpo_rows(tokenizer, pairs, conversations)
        trainer = orpo_trainer(model, tokenizer, config, rows, lora, common_args, callbacks)
    else:
        eval_args = {}
        if held_out:  # the held-out loss: TRL builds its labels from the same assistant masks as training's
            eval_args = dict(
                eval_strategy="steps",
                eval_steps=report["eval_data"]["eval_steps"],
                per_device_eval_batch_size=config.train.batch_size,
            )
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common_args, **eval_args, **extra_args_for(SFTConfig, config.train.extra_args)),
            train_dataset=Dataset.from_list(_sft_rows(tokenizer, conversations)),
            eval_dataset=Dataset.from_list(_sft_rows(tokenizer, held_out)) if held_out else None,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=callbacks,
        )
    _give_token_wrappers_a_bias(trainer.model)
    trainer.remove_callback(PrinterCallback)  # our progress bar and train_log.jsonl replace its dict dumps
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in trainer.model.parameters())
    train_started = time.time()
    with head_at_supervised_positions_only():
        result = trainer.train(resume_from_checkpoint=str(checkpoint[1]) if checkpoint else None)
    train_seconds = time.time() - train_started
    rank_record = {
        "rank": rank,
        "world_size": world_size,
        "optimizer_steps": result.global_step,
        "batches_per_epoch": len(trainer.get_train_dataloader()),
        "resumed_from_step": checkpoint[0] if checkpoint else None,
    }
    staging = run_dir / ".adapter.partial"
    preference = None
    if config.train.method == "sft+dpo":
        from molting.train.preference import dpo_stage

        model, preference = dpo_stage(
            trainer.model,
            tokenizer,
            config,
            persona,
            report,
            common_args,
            result.global_step,
            lambda total, offset: _log_and_progress_callback(
                log_path, total, device, show_progress and main_process, [], 0.0, "dpo", offset
            ),
        )
        if not main_process:
            return {"train": rank_record}
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
    else:
        # Every rank takes part in saving (FSDP and DeepSpeed gather the adapter's shards); the Trainer
        # writes from rank 0 only, with the tokenizer and chat template.
        trainer.save_model(str(staging))
        trainer.accelerator.wait_for_everyone()
        if not main_process:
            return {"train": rank_record}
        (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; the adapter is safetensors only
        if orpo:
            preference = {
                "method": "orpo",
                "trainer": "trl.experimental.orpo.ORPOTrainer",
                "pairs": len(pairs),
                "conversations": len(conversations),  # as pairs with rejected == chosen: the NLL (SFT) term only
                "optimizer_steps": result.global_step,
                "beta": config.preference.beta,
                "final": {
                    k: v
                    for k, v in (callback.rows[-1] if callback.rows else {}).items()
                    if k == "loss" or k.startswith(("rewards/", "logps/", "log_odds", "nll_loss"))
                },
                "seconds": round(train_seconds, 1),  # the one stage, the same seconds as train's
            }
    replace_dir_atomic(staging, paths.adapter)
    shutil.rmtree(checkpoints, ignore_errors=True)  # pruned on success

    by_epoch = loss_by_epoch(callback.rows)  # the SFT (or ORPO) stage's rows; a DPO stage has its own callback
    train_rows = [r for r in callback.rows if "loss" in r]
    manifest = {
        "run": name,
        "config": config.to_dict(),
        "inputs": inputs_record(config.persona, config.data, config.suite, config.eval_data),
        "versions": versions(),
        "git_commit": git_commit(Path(config.persona).parent),
        "machine": machine(),
        "train": {
            **rank_record,
            "device": device,
            "dtype": str(dtype).replace("torch.", ""),
            "quantization": config.train.quantization,
            "mixed_precision": precision,
            "lora_dropout": dropout,
            "trainable_tokens": token_plan,
            "adapter_sha256": sha256_file(paths.adapter_weights),  # what every evaluation is checked against
            "examples": len(conversations),
            "trainable_parameters": trainable,
            "total_parameters": total_params,
            "train_loss_mean": round(result.training_loss, 4),
            "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
            "extra_args": as_the_trainer_holds(trainer.args, config.train.extra_args),
            "final_loss": train_rows[-1]["loss"] if train_rows else None,
            "loss_by_epoch": by_epoch,
            "eval_loss": held_out_loss(callback.rows),
            "seconds": round(train_seconds, 1),
        },
        "preference": preference,
        "timings": {
            "started": started,
            "train_seconds": round(
                train_seconds + (preference["seconds"] if config.train.method == "sft+dpo" else 0), 1
            ),
            "total_seconds": round(time.time() - started, 1),
        },
        "memory": peak_memory_mb(device),
        "memory_estimate": report.get("memory"),
    }
    write_json_atomic(paths.manifest, manifest)
    return manifest
