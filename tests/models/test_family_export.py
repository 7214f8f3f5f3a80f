"""Train, evaluate and export each family base, end to end through the real `molt` commands; plus Qwen3's real
template on the Qwen2 vocabulary, which trains one assistant turn at a time. Its own file (not
test_families.py) so pytest-xdist's --dist loadfile can run it beside the rest of the family matrix."""

import json

import pytest
from conftest import EXAMPLE, qwen3_template_path, row_base

from molting.models.family_base import FAMILIES

ROWS = [*FAMILIES, "qwen3"]


@pytest.mark.parametrize("family", ROWS)
def test_train_eval_and_export_on_the_family(family, family_bases, tmp_path):
    """A few LoRA steps move the B matrices; `molt eval` runs on the Qwen3 row; the GGUF export's
    llama.cpp tokenizer (on the real vocabulary) tokenizes every suite prompt as transformers does, with the BOS
    as trained; the Modelfile's TEMPLATE renders every suite prompt as the chat template."""
    import shutil

    import torch
    from conftest import run_molt
    from safetensors.torch import load_file

    from molting.config import load_run_config
    from molting.train.sft import train_run

    project = tmp_path / "claudio"
    shutil.copytree(EXAMPLE, project)
    lines = (project / "data.jsonl").read_text(encoding="utf-8").splitlines()
    kept = lines[:3] + [lines[9]]  # line 10: three user/assistant exchanges, which Qwen3's template splits
    (project / "data.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    settings = [
        f"base_model=builtin:{row_base(family)}",
        *([f"chat_template={qwen3_template_path()}"] if family == "qwen3" else []),
        "train.epochs=1",
        "train.grad_accum=1",
        "train.batch_size=1",
        "train.learning_rate=2e-3",
        "check.min_steps=1",
        "lora.modules_to_save=[]",
        "generation.max_new_tokens=16",
    ]
    run = tmp_path / "runs" / family
    train_run(load_run_config(project / "molt.yaml", settings), run, show_progress=False)
    if family == "qwen3":
        preflight = json.loads((run / "preflight.json").read_text())
        assert preflight["steps"]["examples"] == 6  # three single-turn lines, and line 10's three assistant turns
        assert any("one per assistant turn" in f["message"] for f in preflight["findings"])
    lora_b = [w for name, w in load_file(run / "adapter" / "adapter_model.safetensors").items() if "lora_B" in name]
    assert lora_b and all(torch.count_nonzero(w) > 0 for w in lora_b)

    if family == "qwen3":
        # `molt eval` end to end on the run trained one turn at a time (every family's stops on each end-of-turn
        # token: test_families.py, in-process; every family's adapter generates again in the verify below)
        run_molt("eval", run, "--no-fluency", check=True)  # the reference model's pass: test_fluency.py
        rows = [json.loads(line) for line in next((run / "eval").glob("*/responses.jsonl")).read_text().splitlines()]
        assert rows and all(r["finish_reason"] in ("stop", "length") for r in rows)

    result = run_molt("export", run, "--to", "ollama", "--verify", "--max-new-tokens", 8)
    report = json.loads((run / "export" / "ollama" / "verify.json").read_text())
    checks = {c["check"]: c for c in report["checks"]}
    n = len(report["questions"])
    served = report["models"]["gguf-f16-served"]
    assert served["identical_prompts"] == n, (served, result.stdout[-2000:])
    bos = next(c for name, c in checks.items() if "BOS" in name)
    assert bos["ok"], bos
    assert checks["Modelfile TEMPLATE renders every suite prompt as the chat template does"]["ok"]
    assert checks["Modelfile stops cover every end-of-turn token"]["ok"]
    modelfile = (run / "export" / "ollama" / "Modelfile").read_text()
    assert ("tool-calling branches" in modelfile) == (family in ("qwen2.5", "llama3.2", "qwen3"))
    assert ("reasoning (<think>...</think>) of earlier assistant turns" in modelfile) == (family == "qwen3")
