"""The README's memory table: which shipped base trains with LoRA or QLoRA on a 4/8/16/24 GB GPU, and with
what settings, as predicted by molting.train.memory_estimate from each model's shipped config.json.

Run: python bench/memory_table.py   (prints the Markdown table; the README holds its output verbatim, and
tests/test_memory.py checks that it still does)
"""

from molting.models.model_configs import shipped_config, shipped_ids
from molting.train.memory_estimate import ModelShape, TrainingPlan, estimate_memory, fits

GPU_GB = (4, 8, 16, 24)
# molting's defaults (r=16 on every linear layer, batch 4, max_length 1024, bf16), then what the preflight
# suggests, one more each rung: gradient checkpointing, batch 1 (grad_accum 4), max_length 512.
LADDER = [
    ("defaults", {}),
    ("ckpt", {"gradient_checkpointing": True}),
    ("ckpt, b1", {"gradient_checkpointing": True, "batch_size": 1}),
    ("ckpt, b1, 512", {"gradient_checkpointing": True, "batch_size": 1, "seq_len": 512}),
]


def cell(config: dict, plan: TrainingPlan, gb: int) -> str:
    for label, changes in LADDER:
        peak = estimate_memory(config, plan.but(**changes))["peak_gb"]
        if fits(peak, gb):
            return f"{label} ({peak:.1f})"
    return "—"


def table() -> str:
    lines = [
        "| base | params | method | " + " | ".join(f"{gb} GB" for gb in GPU_GB) + " |",
        "|---|---|---|" + "---|" * len(GPU_GB),
    ]
    # molt train's SFT stage: the fused LM head, every position counted as supervised (the safe side; the
    # preflight uses the data's own share of assistant tokens)
    plan = TrainingPlan(device="cuda", weights_dtype="bfloat16", lora_r=16, seq_len=1024, batch_size=4, fused_head=True)
    models = sorted(shipped_ids(), key=lambda m: ModelShape.from_config(shipped_config(m)).params)
    for model_id in models:
        config = shipped_config(model_id)
        params = f"{ModelShape.from_config(config).params / 1e9:.2f} B"
        for method, quantization in (("LoRA", "none"), ("QLoRA", "4bit")):
            cells = [cell(config, plan.but(quantization=quantization), gb) for gb in GPU_GB]
            lines.append(f"| {model_id} | {params} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
