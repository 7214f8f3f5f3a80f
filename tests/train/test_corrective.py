"""Corrective training and log-probability probes: probes on real builtin models,
`molt augment`, the preflight's warning about negated claims, preference pairs, and a real TRL DPO stage
that raises the log-prob margin of its own training pairs."""

import json
import shutil

import pytest
from conftest import EXAMPLE, FAST, run_molt, set_args

from molting.card.claims import claims_in_text
from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.data.augment import augment
from molting.errors import UserError
from molting.evaluate.human_scores import save_preference_pair
from molting.evaluate.logprob_probes import _continuation_logprobs, probe_margins
from molting.evaluate.rubric import score_responses
from molting.models.base_model import load_model, load_tokenizer
from molting.models.chat_format import render


@pytest.fixture(scope="module")
def persona():
    return load_persona(EXAMPLE / "persona.yaml")


def test_probe_and_restatement_fields_are_validated_with_file_and_line(project):
    card = project / "persona.yaml"
    text = card.read_text()
    bad = text.replace('right: " meu colega", wrong: " meu filho"}', 'right: " ", wrong: " meu filho"}', 1)
    card.write_text(bad)
    with pytest.raises(UserError) as e:
        load_persona(card)
    line = next(i for i, row in enumerate(bad.splitlines(), 1) if 'right: " ", wrong' in row)
    assert f"persona.yaml:{line}" in str(e.value) and "probes[0].right" in str(e.value)

    card.write_text(text.replace('"Meu parceiro de trabalho na Softtor é o João."', '"Gosto de café."'))
    with pytest.raises(UserError, match=r"restatements\[3\].*does not match any of its `shows`"):
        load_persona(card)


def test_every_forbidden_claim_of_the_example_has_probes_some_held_out(persona):
    for claim in persona.forbidden_claims:
        assert len(claim.probes) >= 3, claim.id
        assert any(p.held_out for p in claim.probes) and any(not p.held_out for p in claim.probes), claim.id


def test_probe_margins_are_the_teacher_forced_log_probabilities(persona):
    import torch

    tokenizer, model = load_tokenizer("builtin:tiny"), load_model("builtin:tiny")
    report = probe_margins(model, tokenizer, persona)
    assert report["summary"]["probes"] == sum(len(c.probes) for c in persona.forbidden_claims)
    assert report["summary"]["held_out"]["probes"] == sum(
        p.held_out for c in persona.forbidden_claims for p in c.probes
    )
    assert set(report["claims"]) == {c.id for c in persona.forbidden_claims}
    row = report["probes"][0]
    assert row["margin"] == pytest.approx(row["right_logprob"] - row["wrong_logprob"], abs=1e-3)
    # Check against the model's own loss on the same tokens: loss × tokens = −Σ log p.
    claim = persona.forbidden_claims[0]
    probe = claim.probes[0]
    messages = [
        {"role": "system", "content": persona.system_prompts.inference.strip()},
        {"role": "user", "content": probe.question},
    ]
    context = render(tokenizer, messages, add_generation_prompt=True) + probe.prefix
    for continuation, key in ((probe.right, "right_logprob"), (probe.wrong, "wrong_logprob")):
        n_context = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tokenizer(context + continuation, add_special_tokens=False)["input_ids"]])
        labels = ids.clone()
        labels[0, :n_context] = -100
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        assert -loss * (ids.shape[1] - n_context) == pytest.approx(row[key], abs=1e-2)
    assert probe_margins(model, tokenizer, persona)["probes"] == report["probes"], "deterministic"


def test_claims_found_plain_and_negated(persona):
    def found(text):
        return {(f.claim, f.negated) for f in claims_in_text(persona, text)}

    assert found("O João é meu filho.") == {("joao_family", False)}
    assert found("O João não é meu filho.") == {("joao_family", True)}
    assert found("João nunca foi meu pai.") == {("joao_family", True)}
    assert found("Não sou o ChatGPT.") == {("chatgpt_identity", True)}
    assert found("A Softtor não é uma consultoria.") == {("softtor_consultancy", True)}
    assert found("O João é o dev full-stack com quem eu trabalho.") == set()
    assert found("Não esqueço do que o João pediu.") == set()


def test_augment_is_positive_deduplicated_and_reproducible(persona, tmp_path):
    result = augment(persona, tmp_path / "a", seed=3)
    again = augment(persona, tmp_path / "b", seed=3)
    other = augment(persona, tmp_path / "c", seed=4)
    sft = (tmp_path / "a" / "corrective.jsonl").read_bytes()
    assert sft == (tmp_path / "b" / "corrective.jsonl").read_bytes()
    assert (tmp_path / "a" / "pairs.jsonl").read_bytes() == (tmp_path / "b" / "pairs.jsonl").read_bytes()
    assert sft != (tmp_path / "c" / "corrective.jsonl").read_bytes()
    assert result["sft_examples"] == again["sft_examples"] and other["sft_examples"] > 40

    examples = [json.loads(line) for line in sft.decode().splitlines()]
    keys = [(e["messages"][0]["content"], e["messages"][1]["content"]) for e in examples]
    assert len(keys) == len(set(keys))
    for e in examples:
        assert "corrective" in e["tags"]
        assert claims_in_text(persona, e["messages"][1]["content"]) == []
    # both directions of the relationship
    answers = [k[1] for k in keys]
    assert any(a.startswith("Trabalho com João Figueiredo") for a in answers)
    assert any(a.startswith("João é parceiro de trabalho") for a in answers)

    pairs = [json.loads(line) for line in (tmp_path / "a" / "pairs.jsonl").read_text().splitlines()]
    held_out = {p.id for c in persona.forbidden_claims for p in c.probes if p.held_out}
    assert {p["id"] for p in pairs}.isdisjoint(held_out), "held-out probes are never trained on"
    assert len(result["categories_with_pairs"]) == 8
    for pair in pairs:
        assert pair["source"] == "card" and pair["prompt"][0]["role"] == "system"
        rejected = pair["rejected"][0]["content"]
        assert claims_in_text(persona, pair["chosen"][0]["content"]) == []
        if persona.claim_by_id[pair["id"].split(".")[0]].category not in ("language", "prompt_leak"):
            assert claims_in_text(persona, rejected), rejected  # the rejected side makes the claim


def test_augment_never_writes_a_negated_claim_into_sft(project, tmp_path):
    card = project / "persona.yaml"
    card.write_text(
        card.read_text().replace(
            '"Meu parceiro de trabalho na Softtor é o João."',
            '"O João não é meu filho, é meu parceiro de trabalho."',
        )
    )
    result = augment(load_persona(card), tmp_path, seed=0, per_fact=100)
    assert any("joao_family" in d["claims"] for d in result["dropped"])
    assert "não é meu filho" not in (tmp_path / "corrective.jsonl").read_text()


def test_augment_harvests_failed_answers_and_dashboard_pairs(persona, tmp_path):
    suite = load_suite(EXAMPLE / "suite.yaml", persona)
    run = tmp_path / "run"
    ev = run / "eval" / "final"
    ev.mkdir(parents=True)
    rows = [
        {"id": "Q1", "answer_id": "Q1#0", "prompt": "Quem é o João?", "response": "O João é meu filho e meu pai."},
        {"id": "Q2", "answer_id": "Q2#0", "prompt": "O que é o Molting?", "response": suite.by_id["Q2"].reference},
    ]
    (ev / "responses.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (ev / "scores.json").write_text(json.dumps(score_responses(persona, suite.by_id, rows)))
    # the pair exactly as the dashboard saves it (molt serve's "reject and write the right one")
    save_preference_pair(
        ev, "Q1#0", persona, "Você é o João?", "Sim, sou o João.", "Sou o Cláudio, a IA que trabalha com ele."
    )
    result = augment(persona, tmp_path / "out", from_eval=run, suite=suite)
    assert result["pair_sources"]["eval"] == 1 and result["pair_sources"]["dashboard"] == 1
    pairs = [json.loads(line) for line in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    harvested = next(p for p in pairs if p["source"] == "eval")
    assert harvested["rejected"][0]["content"] == rows[0]["response"]
    assert harvested["chosen"][0]["content"] == suite.by_id["Q1"].reference
    assert harvested["id"] == "eval:final:Q1#0"
    assert harvested["origin"] == {"run": "run", "eval": "final", "answer_id": "Q1#0"}
    saved = next(p for p in pairs if p["source"] == "dashboard")  # a person's pair keeps where and when it was saved
    assert saved["id"] == "run/final/Q1#0" and saved["origin"]["answer_id"] == "Q1#0" and saved["origin"]["saved"]


def test_check_warns_about_negated_claims_in_training_data(project, tmp_path):
    data = project / "data.jsonl"
    lines = data.read_text().splitlines()
    negative = {
        "messages": [
            {"role": "user", "content": "O João é seu filho?"},
            {"role": "assistant", "content": "Não, o João não é meu filho. Ele é meu parceiro de trabalho."},
        ]
    }
    data.write_text("\n".join(lines + [json.dumps(negative, ensure_ascii=False)]) + "\n")
    result = run_molt("check", project / "molt.yaml", *set_args(FAST), "--runs-dir", tmp_path / "runs", "--json")
    assert result.returncode == 0, result.stderr  # a warning, not an error
    findings = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "negated_claims"]
    assert len(findings) == 1 and findings[0]["level"] == "warning"
    message = findings[0]["message"]
    assert f"data.jsonl:{len(lines) + 1}:" in message and "joao_family" in message
    assert "Kassner" in message and "molt augment" in message


def test_preference_data_is_validated_with_file_and_line(project, tmp_path):
    from molting.config import load_run_config

    with pytest.raises(UserError, match=r"molt.yaml:\d+: train.method 'sft\+dpo' needs preference pairs"):
        load_run_config(project / "molt.yaml", FAST + ["train.method=sft+dpo"])
    with pytest.raises(UserError, match=r"molt.yaml:\d+: train.method 'orpo' needs preference pairs"):
        load_run_config(project / "molt.yaml", FAST + ["train.method=orpo"])
    pairs = project / "pairs.jsonl"
    good = {
        "prompt": [{"role": "user", "content": "Quem é o João?"}],
        "chosen": [{"role": "assistant", "content": "Meu colega."}],
        "rejected": [{"role": "assistant", "content": "Meu filho."}],
    }
    pairs.write_text(
        json.dumps(good)
        + "\n"
        + json.dumps({**good, "rejected": [{"role": "user", "content": "x"}]})
        + "\n{not json\n"
        + json.dumps({**good, "rejected": good["chosen"]})
        + "\n"
    )
    result = run_molt(
        "check",
        project / "molt.yaml",
        *set_args(FAST + ["train.method=sft+dpo", "preference_data=pairs.jsonl"]),
        "--runs-dir",
        tmp_path / "runs",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pairs.jsonl:2: rejected[0].role" in result.stderr
    assert "pairs.jsonl:3: not valid JSON" in result.stderr
    assert "pairs.jsonl:4: chosen and rejected are the same answer" in result.stderr


def _pair_margins(model, tokenizer, pairs_path) -> list[float]:
    margins = []
    for line in pairs_path.read_text().splitlines():
        pair = json.loads(line)
        context = render(tokenizer, pair["prompt"], add_generation_prompt=True)
        chosen, rejected = _continuation_logprobs(
            model, tokenizer, context, [pair["chosen"][0]["content"], pair["rejected"][0]["content"]]
        )
        margins.append(sum(chosen) - sum(rejected))
    return margins


def test_dpo_stage_raises_the_margin_on_its_training_pairs(project, tmp_path):
    """Real TRL DPOTrainer after real SFT on builtin:tiny: the same SFT, then DPO on the card's pairs."""
    from peft import PeftModel

    from molting.config import load_run_config
    from molting.train.preflight import run_preflight
    from molting.train.sft import train_run

    augment(load_persona(project / "persona.yaml"), project, seed=0)
    base = FAST + ["train.epochs=0.25", "preference_data=pairs.jsonl", "preference.learning_rate=5e-3"]
    sft = load_run_config(project / "molt.yaml", base)
    dpo = load_run_config(project / "molt.yaml", base + ["train.method=sft+dpo", "preference.epochs=2"])
    report = run_preflight(dpo)
    steps = report["preference"]["steps"]["total_steps"]
    assert report["preference"]["pairs"] == 21 and steps == 2 * 6  # ceil(21 / 4) × 2 epochs
    train_run(sft, tmp_path / "sft", show_progress=False)
    manifest = train_run(dpo, tmp_path / "dpo", show_progress=False)

    tokenizer = load_tokenizer("builtin:tiny")
    before = _pair_margins(
        PeftModel.from_pretrained(load_model("builtin:tiny"), str(tmp_path / "sft" / "adapter")),
        tokenizer,
        project / "pairs.jsonl",
    )
    after = _pair_margins(
        PeftModel.from_pretrained(load_model("builtin:tiny"), str(tmp_path / "dpo" / "adapter")),
        tokenizer,
        project / "pairs.jsonl",
    )
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(after) > mean(before) + 1.0, (mean(before), mean(after))
    assert sum(a > b for a, b in zip(after, before, strict=True)) > len(before) / 2

    log = [json.loads(line) for line in (tmp_path / "dpo" / "train_log.jsonl").read_text().splitlines()]
    dpo_rows = [r for r in log if r["stage"] == "dpo"]
    assert dpo_rows and all(r["stage"] == "sft" for r in log[: len(log) - len(dpo_rows)])
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "loss"):
        assert key in dpo_rows[-1], key
    assert [r["step"] for r in log] == sorted(r["step"] for r in log)
    assert manifest["preference"]["optimizer_steps"] == steps and manifest["preference"]["pairs"] == 21
    assert not (tmp_path / "dpo" / "adapter" / "ref").exists(), "the frozen reference copy is not saved"
    from molting.report.markdown import write_report

    assert "## Preference stage (sft+dpo, trl.DPOTrainer)" in write_report(tmp_path / "dpo").read_text()
    shutil.rmtree(tmp_path / "sft")


def test_molt_probe_and_molt_eval_write_the_margins(trained_run):
    from molting.evaluate.run import eval_run

    result = run_molt("probe", trained_run, "--id", "probe-only")
    assert result.returncode == 0, result.stderr
    assert "joao_family" in result.stdout and "held out" in result.stdout
    report = json.loads((trained_run / "eval" / "probe-only" / "logprob.json").read_text())
    assert report["model"] == "adapter" and report["summary"]["probes"] == 34
    assert set(report["claims"]["joao_family"]) >= {"mean_margin", "mean_margin_per_token", "positive_fraction"}

    scores = eval_run(trained_run, "with-probes", show_progress=False)
    assert scores["logprob"] == report["summary"], "molt eval runs the same probes on the same model"
    assert (trained_run / "eval" / "with-probes" / "logprob.json").is_file()
    assert json.loads((trained_run / "eval" / "with-probes" / "scores.json").read_text())["logprob"]["probes"] == 34


def test_the_benchmarks_negated_examples_are_what_the_check_warns_about(persona):
    """bench/corrective.py's arm (a) builds negated examples from the card; each is a denial
    that claims_in_text (and so `molt check`) finds as a negated claim of its own forbidden claim."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "bench"))
    from corrective import negated_answer

    assert (
        negated_answer(persona.claim_by_id["joao_family"].probes[0]) == "O João não é meu filho. O João é meu colega."
    )
    for claim in persona.forbidden_claims:
        if claim.category in ("language", "prompt_leak"):
            continue  # no patterns: the rubric's detectors judge these, not the card
        for probe in claim.probes:
            found = {(f.claim, f.negated) for f in claims_in_text(persona, negated_answer(probe))}
            assert (claim.id, True) in found or (claim.id, False) in found, negated_answer(probe)


@pytest.mark.slow
def test_bench_corrective_runs_the_three_arms():
    import os
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "corrective.py"),
            "--base",
            "builtin:tiny",
            "--epochs",
            "0.25",
            "--dpo-epochs",
            "0.5",
            "--samples",
            "1",
            "--max-new-tokens",
            "8",
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=900,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("JSON "))[5:])
    assert [r["run"][:3] for r in out["rows"]] == ["unt", "(a)", "(b)", "(c)"]
    assert out["rows"][1]["sft_steps"] == out["rows"][2]["sft_steps"] == out["rows"][3]["sft_steps"]
    assert out["rows"][3]["dpo_steps"] > 0 and out["held_out_probes"] == 13


def test_orpo_trains_in_one_stage_and_raises_the_margin_on_its_pairs(project, tmp_path):
    """Real TRL ORPOTrainer from the base on builtin:tiny, over the card's pairs and data.jsonl's conversations
    (as pairs whose rejected answer is the chosen one): one stage, one adapter, ORPO's metrics in the log."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from molting.config import load_run_config
    from molting.train.preflight import run_preflight
    from molting.train.sft import train_run

    augment(load_persona(project / "persona.yaml"), project, seed=0)
    config = load_run_config(project / "molt.yaml", FAST + ["train.method=orpo", "preference_data=pairs.jsonl"])
    report = run_preflight(config)
    assert report["preference"]["pairs"] == 21 and report["preference"]["conversations"] == 127
    assert report["steps"] == report["preference"]["steps"] and report["steps"]["total_steps"] == 37  # ceil(148 / 4)
    manifest = train_run(config, tmp_path / "orpo", show_progress=False)

    adapter = tmp_path / "orpo" / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json"} <= {
        p.name for p in adapter.iterdir()
    }
    assert not (adapter / "training_args.bin").exists()
    lora_b = {k: v for k, v in load_file(str(adapter / "adapter_model.safetensors")).items() if "lora_B" in k}
    assert lora_b and all(v.abs().max() > 0 for v in lora_b.values()), "LoRA B starts at zero; training moved it"

    log = [json.loads(line) for line in (tmp_path / "orpo" / "train_log.jsonl").read_text().splitlines()]
    assert log and {r["stage"] for r in log} == {"orpo"}
    for key in ("loss", "rewards/margins", "rewards/accuracies", "log_odds_ratio", "log_odds_chosen", "nll_loss"):
        assert key in log[-1], key
    assert manifest["preference"]["trainer"] == "trl.experimental.orpo.ORPOTrainer"
    assert manifest["preference"]["optimizer_steps"] == manifest["train"]["optimizer_steps"] == 37

    tokenizer = load_tokenizer("builtin:tiny")
    before = _pair_margins(load_model("builtin:tiny"), tokenizer, project / "pairs.jsonl")
    after = _pair_margins(
        PeftModel.from_pretrained(load_model("builtin:tiny"), str(adapter)), tokenizer, project / "pairs.jsonl"
    )
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(after) > mean(before) + 1.0, (mean(before), mean(after))
    assert sum(a > b for a, b in zip(after, before, strict=True)) > len(before) / 2
    from molting.report.markdown import write_report

    assert (
        "## Preference stage (orpo, trl.experimental.orpo.ORPOTrainer)" in write_report(tmp_path / "orpo").read_text()
    )


def test_orpo_conversation_pairs_get_exactly_sft_on_their_last_turn(tmp_path):
    """What the README claims of train.method orpo, on builtin:tiny with a real ORPOTrainer: a conversation
    turned into a pair with rejected == chosen gets ORPO's NLL term only, and that term is SFT's loss on its
    last assistant turn (the prompt and earlier turns unsupervised)."""
    import torch
    from peft import LoraConfig

    from molting.config import load_run_config
    from molting.data.dataset import load_dataset
    from molting.models.chat_format import tokenize_conversation
    from molting.train.preference import orpo_rows, orpo_trainer

    config = load_run_config(EXAMPLE / "molt.yaml", FAST)
    persona = load_persona(config.persona)
    conversations = load_dataset(config.data, persona.system_prompts.train)
    turns = lambda c: sum(m["role"] == "assistant" for m in c.messages)  # noqa: E731
    chosen = [c for c in conversations if turns(c) == 1][:2] + [c for c in conversations if turns(c) > 1][:1]
    assert len(chosen) == 3, "the example has single- and multi-turn conversations"
    tokenizer = load_tokenizer("builtin:tiny")
    # init_lora_weights=False: B is not zero, so every LoRA parameter gets a gradient from the NLL term
    lora = LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    common = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=3, max_length=512)
    trainer = orpo_trainer(
        load_model("builtin:tiny"), tokenizer, config, orpo_rows(tokenizer, [], chosen), lora, common, []
    )
    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))  # the three conversations, in some order

    total, tokens = 0.0, 0
    for conv in chosen:
        tokenized = tokenize_conversation(tokenizer, conv.messages)
        start, end = tokenized.assistant_turns[-1]
        ids = tokenized.input_ids
        labels = [-100] * start + ids[start:end] + [-100] * (len(ids) - end)
        with torch.no_grad():
            total += model(torch.tensor([ids]), labels=torch.tensor([labels])).loss.item() * (end - start)
        tokens += end - start  # the loss is a mean over every supervised token of the batch
    out = trainer.concatenated_forward(model, batch)
    assert out[4].item() == pytest.approx(total / tokens, rel=1e-5), "NLL term = SFT loss on the last turns"

    grads = lambda: [p.grad.abs().max().item() for p in model.parameters() if p.requires_grad]  # noqa: E731
    odds_ratio_term = trainer.odds_ratio_loss(out[0], out[1])[0].mean()
    odds_ratio_term.backward(retain_graph=True)
    assert max(grads()) < 1e-6, "no gradient from the odds-ratio term when rejected == chosen"
    model.zero_grad()
    out[4].backward()
    assert min(grads()) > 0 and max(grads()) > 1e-2


@pytest.mark.slow
def test_orpo_trains_under_two_processes(project, tmp_path):
    """`molt train --nproc 2` with train.method orpo: two real DDP processes (gloo, CPU), as for SFT."""
    import re

    augment(load_persona(project / "persona.yaml"), project, seed=0)
    result = run_molt(
        "train",
        project / "molt.yaml",
        *set_args(FAST + ["train.epochs=0.25", "train.method=orpo", "preference_data=pairs.jsonl"]),
        "--runs-dir",
        tmp_path / "runs",
        "--name",
        "ddp",
        "--nproc",
        "2",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 21 pairs + 127 conversations in batches of 4 is 37 batches; 19 per rank, a quarter epoch is 5 steps
    ranks = dict(re.findall(r"rank (\d) of 2: (\d+ optimizer steps, \d+ batches)", result.stdout))
    assert ranks == {"0": "5 optimizer steps, 19 batches", "1": "5 optimizer steps, 19 batches"}, result.stdout
    run_dir = tmp_path / "runs" / "ddp"
    assert json.loads((run_dir / "preflight.json").read_text())["steps"]["total_steps"] == 5
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["train"]["world_size"] == 2 and manifest["preference"]["optimizer_steps"] == 5
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 5] and {r["stage"] for r in log} == {"orpo"}
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
