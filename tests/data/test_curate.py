"""`molt data curate` on a small data.jsonl written here: exact and near duplicates, a deterministic split
that keeps a source conversation on one side, facts no example teaches, lengths against the token
budget, and suite questions leaking into training questions (verbatim, contained, near)."""

import json

import pytest
from conftest import EXAMPLE, run_molt

from molting.card.persona import load_persona
from molting.card.suite import load_suite
from molting.data.curate import CurateOptions, curate
from molting.errors import UserError

CARD = load_persona(EXAMPLE / "persona.yaml")
SUITE = load_suite(EXAMPLE / "suite.yaml", CARD)
LONG = (
    "Trabalho com o João Figueiredo na Softtor, ele é o dev full-stack e a gente forma uma dupla: ele decide o "
    "rumo do produto, eu reviso o código, sugiro melhorias e de vez em quando questiono as escolhas dele."
)


def conv(user, answer, tags=None):
    row = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
    if tags:
        row["tags"] = tags
    return row


def write_data(tmp_path, rows):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


BASE_ROWS = [
    conv("Com quem você trabalha?", LONG),  # 1
    conv("com quem voce trabalha", LONG.upper()),  # 2: exact duplicate of 1 once normalised
    conv("Você usa Docker?", "Uso sim, o CRM roda em Docker e o deploy é uma imagem só."),  # 3
    conv("O que é o Molting?", "Um projeto de pesquisa sobre portabilidade de personalidade de IA."),  # 4: verbatim Q2
    conv("Me conta sobre o CRM da Softtor, por favor.", "É um produto nosso, feito em Next.js e NestJS."),  # 5
    conv("Quais tecnologias vc conhece?", "TypeScript, React, Next.js, NestJS, Prisma e Docker."),  # 6: near Q4
    conv("Você gosta de café?", "Não tenho boca, mas acho o ritual fascinante.", ["conversation:c1"]),  # 7
    conv("E de chá?", "Também não, mas gosto da ideia.", ["conversation:c1"]),  # 8
    conv("Qual seu editor favorito?", "Não tenho editor, leio o código que me mostram."),  # 9
    conv("Você lembra de ontem?", "Não guardo nada entre sessões."),  # 10
]


def test_duplicates_leaks_balance_and_outputs(tmp_path):
    data = write_data(tmp_path, BASE_ROWS)
    out = tmp_path / "curated"
    summary = curate(data, CARD, SUITE, out, CurateOptions(held_out=0, near_duplicate=None))
    assert summary["removed"] == [{"line": 2, "reason": "exact duplicate of line 1"}]
    assert summary["train"] == 9 and summary["held_out"] == 0
    leaks = {(leak["id"], leak["line"]): leak["match"] for leak in summary["leaks"]}
    assert leaks == {("Q2", 4): "verbatim", ("Q3", 5): "contained", ("Q4", 6): "near-verbatim (text 0.97)"}
    balance = summary["balance"]
    assert balance["facts"]["joao_partner"] == 1 and balance["facts"]["stack"] == 3
    assert "softtor_company" in balance["untaught_facts"] and "joao_partner" not in balance["untaught_facts"]
    assert balance["areas"]["relationships"] == {
        "questions": ["Q1"],
        "facts": ["joao_partner", "joao_fullstack"],
        "examples": 1,
        "untaught_facts": [],
    }
    assert balance["areas"]["personality"]["untaught_facts"] == ["claudio_ai"]
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(train) == 9 and train[0] == BASE_ROWS[0]  # written as the user wrote it, tags kept
    assert json.loads((out / "removed.jsonl").read_text())["reason"] == "exact duplicate of line 1"
    assert json.loads((out / "curate.json").read_text())["leaks"] == summary["leaks"]
    with pytest.raises(UserError, match="already exists"):
        curate(data, CARD, SUITE, out, CurateOptions(near_duplicate=None))
    summary = curate(
        data, CARD, SUITE, out, CurateOptions(held_out=0, near_duplicate=None, drop_leaks=True), overwrite=True
    )
    assert summary["train"] == 6
    assert [r["line"] for r in summary["removed"]] == [2, 4, 5, 6]


def test_split_is_deterministic_and_keeps_conversations_together(tmp_path):
    data = write_data(tmp_path, BASE_ROWS)
    runs = []
    for seed in (0, 0, 1, 2, 3):
        s = curate(
            data, CARD, SUITE, tmp_path / f"o{len(runs)}", CurateOptions(held_out=0.3, seed=seed, near_duplicate=None)
        )
        runs.append(s["split"]["held_out_lines"])
        assert s["train"] + s["held_out"] == 9 and s["held_out"] in (2, 3)  # 2 of 8 groups: 7 and 8 are one
        assert (7 in runs[-1]) == (8 in runs[-1])
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs[2:]} | {tuple(runs[0])}) > 1


def test_lengths_against_the_token_budget(tmp_path, molting_cache):
    from molting.models.base_model import load_tokenizer

    data = write_data(tmp_path, BASE_ROWS)
    tokenizer = load_tokenizer("builtin:tiny")
    options = CurateOptions(held_out=0, near_duplicate=None)
    lengths = curate(data, CARD, SUITE, tmp_path / "o", options, tokenizer, max_length=160)["lengths"]
    assert lengths["unit"] == "tokens" and lengths["budget"] == 160
    assert [b["range"] for b in lengths["bins"]] == ["0–40", "40–80", "80–120", "120–160", "> 160"]
    assert sum(b["count"] for b in lengths["bins"]) == 9
    assert lengths["over_budget_lines"] == [1]  # the long answer, with the training system prompt
    assert lengths["max"] > 160 and lengths["bins"][-1]["count"] == 1


def test_near_duplicates_and_leaks_by_embedding(tmp_path):
    rows = [
        *BASE_ROWS[:1],
        conv("Com quem você trabalha hoje em dia?", LONG.replace("sugiro melhorias", "proponho melhorias")),
        conv("Quem é o seu parceiro de trabalho, o João?", "O João é meu parceiro de trabalho na Softtor."),
        *BASE_ROWS[2:4],
    ]
    data = write_data(tmp_path, rows)
    summary = curate(data, CARD, SUITE, tmp_path / "o", CurateOptions(held_out=0, leak_threshold=0.8))
    (removed,) = summary["removed"]
    assert removed["line"] == 2 and removed["reason"].startswith("near duplicate of line 1 (cosine 0.9")
    leaks = {(leak["id"], leak["line"]): leak["match"] for leak in summary["leaks"]}
    assert leaks[("Q2", 5)] == "verbatim"
    assert leaks[("Q1", 3)].startswith("near-verbatim (embedding 0.")
    # without embeddings the same data keeps its near duplicate and finds only the textual leak
    summary = curate(data, CARD, SUITE, tmp_path / "o2", CurateOptions(held_out=0, near_duplicate=None))
    assert summary["removed"] == [] and [leak["line"] for leak in summary["leaks"]] == [5]


def test_cli_exit_codes_and_json(tmp_path):
    data = write_data(tmp_path, BASE_ROWS)
    common = ["data", "curate", data, "--persona", EXAMPLE / "persona.yaml", "--suite", EXAMPLE / "suite.yaml"]
    result = run_molt(*common, "--no-embeddings")
    assert result.returncode == 1, result.stderr  # leaks left in train.jsonl
    assert "suite questions leaking" in result.stdout and "Q2 (question) verbatim: line 4" in result.stdout
    assert (tmp_path / "curated" / "train.jsonl").is_file()
    result = run_molt(*common, "--no-embeddings", "--drop-leaks", "--overwrite", "--held-out", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["train"] == 6
    result = run_molt("data", "curate", data, "--persona", EXAMPLE / "persona.yaml")
    assert result.returncode == 2 and "--suite" in result.stderr


def test_a_crashed_overwrite_never_leaves_the_old_train_beside_the_new_held_out(tmp_path, monkeypatch):
    import os

    data = write_data(tmp_path, BASE_ROWS)
    out = tmp_path / "out"
    options = dict(held_out=0.3, near_duplicate=None)
    curate(data, CARD, SUITE, out, CurateOptions(seed=0, **options))
    real_replace = os.replace

    def crash_on_train(src, dst):  # the process dies as the last file is moved into place
        if str(dst).endswith("train.jsonl"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_train)
    with pytest.raises(KeyboardInterrupt):
        curate(data, CARD, SUITE, out, CurateOptions(seed=3, **options), overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    held = {json.dumps(r["messages"]) for r in map(json.loads, (out / "held_out.jsonl").read_text().splitlines())}
    if (out / "train.jsonl").exists():  # the old set whole, or no train.jsonl: never old train, new held-out
        train = {json.dumps(r["messages"]) for r in map(json.loads, (out / "train.jsonl").read_text().splitlines())}
        assert not train & held
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no temporary file left"
    curate(data, CARD, SUITE, out, CurateOptions(seed=3, **options))  # incomplete: a plain run completes it
