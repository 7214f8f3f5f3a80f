"""Peak memory of loading and LoRA-training a base, predicted from its config.json alone (no weights).

Reached through `estimate_memory(model_config, plan)` (the preflight's `memory` section, the README's
table via `bench/memory_table.py`) and `fit_suggestions`, which says what would make a run fit.

The estimate adds up what PyTorch actually holds, term by term, in bytes:

- **weights**: every parameter in the load dtype; with bitsandbytes 4-bit the decoder's linear layers take
  0.5 byte a parameter plus 1/64 byte of (double-quantised) block scales, 8-bit one byte, and everything
  else (embeddings, output head, norms) is cast to fp32 by `peft.prepare_model_for_kbit_training`;
- **trainable state**: LoRA A/B matrices (fp32: PEFT upcasts adapters) and full copies of
  `lora.modules_to_save`, each with its gradient and AdamW's two moments — 4 copies of every trainable
  parameter;
- **autocast copies**: training fp32 weights under bf16 autocast (a CPU with native bf16) casts each frozen
  linear weight per use and keeps the bf16 copy for the backward pass: 2 bytes per linear parameter;
- **activations**: what autograd saves per token and decoder layer (norm inputs in fp32, q/k/v and their
  rotary copies, the attention output, the MLP's gate, up, activation and product) times tokens in the
  longest batch; with gradient checkpointing only each layer's input is kept, plus one layer recomputed;
- **logits**: `molt train`'s SFT stage never builds them (`fused_head`): TRL's fused LM head projects only the
  supervised positions, in tiles of at most 4,096 positions × 32,768 vocabulary rows, and folds each tile into
  the loss; on a GPU (Triton) a tile is one buffer in the compute dtype, on a CPU (torch ops) the buffer plus
  about seven fp32 temporaries of its size in the backward pass; plus the fp32 gradient of the hidden
  states at those positions. Without the fused head (DPO, ORPO): batch × sequence × vocabulary in the
  activation dtype, the fp32 copy the loss takes, its log-softmax and the gradient — 3-4 copies (the largest
  single term for 128k-vocabulary models);
- **fixed cost**: on a CPU the process itself (Python, torch, transformers, TRL, PEFT, datasets imported:
  `CPU_PROCESS_BASELINE_GB`, measured by bench/memory.py), since RSS counts it; on a GPU the CUDA context.

Loading peaks separately: on a CPU the weights plus the memory-mapped safetensors pages being read; on a
GPU the weights, or for on-the-fly 4/8-bit the quantised weights plus the largest single tensor in 16
bits (transformers 5.23 quantises tensor by tensor). `naive_4bit_load_gb` is what the transformers 5 load
spike (transformers #43032) would need instead: every weight in 16 bits on the GPU first.

Validated against measured peak RSS of CPU training runs in bench/memory.py (bench/RESULTS.md).
"""

import dataclasses
import math
from dataclasses import dataclass, field

GIB = 2**30
# Peak RSS of a `molt train` process beyond what its model needs: Python, torch, transformers, TRL, PEFT and
# datasets imported (0.47 GiB alone) plus the training machinery (oneDNN kernels, allocator arenas, the
# Trainer). Measured by bench/memory.py on a 0.3 M-parameter model at batch 1: 0.735 GiB (bench/RESULTS.md).
CPU_PROCESS_BASELINE_GB = 0.74
# Device memory the CUDA context and kernels take outside PyTorch's allocator (0.3-0.6 GB by GPU/driver).
CUDA_CONTEXT_GB = 0.5
# TRL 1.16's fused LM head (trl/kernels/chunked_logprob.py): TOKEN_CHUNK_SIZE positions × _CHUNKED_LOGPROB_CHUNK_SIZE
# vocabulary rows a tile.
FUSED_TILE_POSITIONS = 4096
FUSED_TILE_VOCAB = 32768
# Bytes per tile element beyond the buffer itself on a CPU: the backward's fp32 temporaries (the tile in fp32,
# logits, log-probabilities, probabilities, the gradient and the target comparison's products).
_FUSED_CPU_TEMPORARIES = 7 * 4
# Fraction of the device memory molting plans to use: PyTorch's allocator fragments, other processes exist.
USABLE_FRACTION = 0.95
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# 4-bit NF4: half a byte a weight, an 8-bit absmax per 64-weight block (double quantisation), its fp32
# second-level scale per 256 blocks.
_NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)


@dataclass(frozen=True)
class ModelShape:
    """The sizes a decoder-only transformer's memory follows from, read from its config.json."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    qkv_bias: bool
    fused: bool  # Phi-3: qkv_proj and gate_up_proj instead of q/k/v and gate/up

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        config = config.get("text_config", config)
        hidden = config["hidden_size"]
        heads = config["num_attention_heads"]
        return cls(
            hidden=hidden,
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or hidden // heads,
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            # Qwen2 has biases on q/k/v whatever its config says
            qkv_bias=bool(config.get("attention_bias")) or config.get("model_type") == "qwen2",
            fused=config.get("model_type") == "phi3",
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """Each decoder layer's linear modules as name -> (in_features, out_features)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        if self.fused:
            return {"qkv_proj": (h, q + 2 * kv), "o_proj": (q, h), "gate_up_proj": (h, 2 * i), "down_proj": (i, h)}
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params(self) -> int:
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        return self.layers * (sum(a * b for a, b in self.linears().values()) + bias)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.head_params + self.norm_params


@dataclass
class TrainingPlan:
    """Everything besides the model that sets the peak: what molt.yaml and the machine say."""

    device: str = "cuda"  # "cuda" or "cpu"
    weights_dtype: str = "bfloat16"  # the load dtype of unquantised weights
    quantization: str = "none"  # none, 4bit, 8bit
    autocast: bool = False  # bf16/fp16 autocast over fp32 weights (a CPU with native bf16)
    lora_r: int = 16
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)
    lora_dropout: float = 0.0
    seq_len: int = 1024  # the longest batch's length: batches are padded to their longest example
    batch_size: int = 4
    gradient_checkpointing: bool = False
    # TRL's fused LM head (molt train's SFT stage): the loss over the supervised positions only, in tiles
    fused_head: bool = False
    # the share of the longest batch's positions that are supervised (the assistant's tokens), for the fused head
    supervised_fraction: float = 1.0

    def but(self, **changes) -> "TrainingPlan":
        return dataclasses.replace(self, **changes)


def _gb(n_bytes: float) -> float:
    return round(n_bytes / GIB, 3)


def estimate_memory(model_config: dict, plan: TrainingPlan) -> dict:
    """Predicted peak memory (GiB) while loading and while training, with the terms that make it up."""
    shape = ModelShape.from_config(model_config)
    quantized = plan.quantization != "none"
    wbytes = _DTYPE_BYTES[plan.weights_dtype]
    other_params = shape.embedding_params + shape.head_params + shape.norm_params
    if plan.quantization == "4bit":
        weights = shape.linear_params * _NF4_BYTES + other_params * 4
    elif plan.quantization == "8bit":
        weights = shape.linear_params * 1 + other_params * 4
    else:
        weights = shape.params * wbytes

    # trainable parameters: LoRA on the targeted linears, full copies of modules_to_save
    targets = (
        shape.linears()
        if plan.target_modules == "all-linear"
        else {name: dims for name, dims in shape.linears().items() if name in plan.target_modules}
    )
    lora_params = shape.layers * sum(plan.lora_r * (a + b) for a, b in targets.values())
    saved_params = 0
    for name in plan.modules_to_save:
        if name in ("embed_tokens", "lm_head", "wte"):
            saved_params += shape.vocab * shape.hidden
    saved_bytes_each = 4 if quantized else wbytes
    trainable_state = 4 * (lora_params * 4 + saved_params * saved_bytes_each)  # weight, grad, 2 Adam moments

    # activations: bytes autograd keeps per token and decoder layer, counted tensor by tensor for the Llama
    # family's code (h: hidden, q: attention width, kv: key/value width, i: MLP width). Per RMSNorm its fp32
    # input and normalised output (plus the 16-bit cast a linear takes); per attention q, k, v, their rotary
    # outputs and rotate_half copies, the attention output and o_proj's contiguous input; per MLP gate, up,
    # silu(gate) and their product.
    h, kv, i = shape.hidden, shape.kv_heads * shape.head_dim, shape.intermediate
    q = shape.heads * shape.head_dim
    if quantized or wbytes == 2:  # 16-bit weights (GPU bf16/fp16, QLoRA's bf16 compute)
        act = 2
        per_token_layer = 20 * h + 10 * q + 8 * kv + 8 * i
    elif plan.autocast:  # fp32 weights under bf16 autocast: linear outputs bf16, rotary and residual fp32
        act = 2
        per_token_layer = 20 * h + 14 * q + 12 * kv + 8 * i
    else:  # plain fp32
        act = 4
        per_token_layer = 16 * h + 20 * q + 16 * kv + 16 * i
    if plan.lora_dropout > 0:  # dropout keeps its own copy of each adapter's input
        per_token_layer += act * sum(a for a, _ in targets.values())
    tokens = plan.seq_len * plan.batch_size
    if plan.gradient_checkpointing:
        residual = 2 if (quantized or wbytes == 2) else 4  # each layer's input, the residual stream
        activations = tokens * (shape.layers * residual * h + 2 * per_token_layer)
    else:
        activations = tokens * (shape.layers + 1) * per_token_layer  # + one layer's gradients in flight
    if plan.fused_head:
        positions = max(1, math.ceil(tokens * min(1.0, plan.supervised_fraction)))
        tile = min(positions, FUSED_TILE_POSITIONS) * min(shape.vocab, FUSED_TILE_VOCAB)
        per_element = act + (_FUSED_CPU_TEMPORARIES if plan.device == "cpu" else 0)
        logits = tile * per_element + positions * h * 4
    else:
        logits = tokens * shape.vocab * (3 * 4 + (act if act != 4 else 0))
    autocast_copies = 0
    if plan.autocast and wbytes == 4:
        per_layer = shape.linear_params / shape.layers
        autocast_copies = 2 * (per_layer * (1 if plan.gradient_checkpointing else shape.layers) + shape.vocab * h)

    fixed = CPU_PROCESS_BASELINE_GB * GIB if plan.device == "cpu" else CUDA_CONTEXT_GB * GIB
    training = fixed + weights + trainable_state + autocast_copies + activations + logits

    largest_tensor = max([a * b for a, b in shape.linears().values()] + [shape.embedding_params])
    if quantized and plan.device == "cuda":
        # tensor by tensor: the quantised model so far plus one tensor in 16 bits; then prepare_model_for_
        # kbit_training casts the embeddings/head to fp32 (old and new copy of the largest at once)
        loading = fixed + weights + max(largest_tensor * 2, shape.embedding_params * 2)
    elif plan.device == "cpu":
        loading = fixed + 2 * shape.params * wbytes  # materialised weights + the mmapped file pages read
    else:
        loading = fixed + weights
    return {
        "parameters": shape.params,
        "trainable_parameters": lora_params + saved_params,
        "loading_peak_gb": _gb(loading),
        "training_peak_gb": _gb(training),
        "peak_gb": _gb(max(loading, training)),
        "naive_4bit_load_gb": _gb(fixed + shape.params * 2) if quantized else None,
        "terms_gb": {
            "fixed": _gb(fixed),
            "weights": _gb(weights),
            "trainable_state": _gb(trainable_state),
            "autocast_copies": _gb(autocast_copies),
            "activations": _gb(activations),
            "logits": _gb(logits),
        },
        "plan": dataclasses.asdict(plan),
    }


def device_memory(device: str) -> dict:
    """Total and free memory of the device training would use: the GPU's, or RAM on a CPU."""
    if device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return {"device": "cuda", "total_gb": _gb(total), "free_gb": _gb(free)}
    import psutil

    vm = psutil.virtual_memory()
    return {"device": "cpu", "total_gb": _gb(vm.total), "free_gb": _gb(vm.available)}


def fit_suggestions(model_config: dict, plan: TrainingPlan, budget_gb: float, smaller_models: dict) -> list[str]:
    """Changes that bring the predicted peak under `budget_gb`, each with its estimate; cumulative when
    no single change is enough. `smaller_models` maps model ids to their config.json dicts."""

    def peak(p: TrainingPlan, config: dict = model_config) -> float:
        return estimate_memory(config, p)["peak_gb"]

    options: list[tuple[str, TrainingPlan]] = []
    if plan.quantization == "none" and plan.device == "cuda":
        options.append(("train.quantization: 4bit (QLoRA)", plan.but(quantization="4bit")))
    if not plan.gradient_checkpointing:
        options.append(("train.gradient_checkpointing: true", plan.but(gradient_checkpointing=True)))
    if plan.batch_size > 1:
        options.append(
            (
                f"train.batch_size: 1 with train.grad_accum ×{plan.batch_size} (same effective batch)",
                plan.but(batch_size=1),
            )
        )
    length = plan.seq_len
    while length > 256:
        length //= 2
        if peak(plan.but(seq_len=length)) <= budget_gb:
            options.append((f"train.max_length: {length} (examples that long or shorter)", plan.but(seq_len=length)))
            break
    found = [f"{label} → {peak(p):.1f} GB" for label, p in options if peak(p) <= budget_gb]
    if not found and options:  # every change together
        combined = plan
        for _, p in options:
            combined = combined.but(**{k: v for k, v in dataclasses.asdict(p).items() if v != getattr(plan, k)})
        if peak(combined) <= budget_gb:
            found.append(" and ".join(label for label, _ in options) + f" → {peak(combined):.1f} GB")
    own = ModelShape.from_config(model_config).params
    for model_id, config in sorted(smaller_models.items(), key=lambda kv: -ModelShape.from_config(kv[1]).params):
        if ModelShape.from_config(config).params < own and peak(plan, config) <= budget_gb:
            found.append(f"a smaller base: {model_id} → {peak(plan, config):.1f} GB")
            break
    return found


def fits(peak_gb: float, available_gb: float) -> bool:
    return peak_gb <= available_gb * USABLE_FRACTION


def round_up(x: float, step: float = 0.1) -> float:
    return math.ceil(x / step) * step
