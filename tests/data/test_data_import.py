"""`molt data import` on small export files written here in each format: the ChatGPT tree's current branch,
the Claude export, ShareGPT, OpenAI messages and prompt/completion JSONL; filters and the reasons they
count; splitting to a budget; malformed input reported with its position; the output loads as data.jsonl."""

import json
from datetime import date
from pathlib import Path

import pytest
from conftest import EXAMPLE, run_molt

from molting.data.chat_import import ImportOptions, import_conversations
from molting.data.dataset import load_dataset
from molting.errors import UserError

PT_Q = "Você pode me explicar como funciona o deploy do CRM?"
PT_A = "Claro, o deploy do CRM roda em Docker: a gente gera a imagem, roda as migrações do Prisma e sobe."
EN_Q = "Can you explain how the deploy works?"
CARD_PROMPT = "Você é o Cláudio, a IA da Softtor. Responda em português, de forma direta e curiosa."
EN_A = "Sure, the deploy runs in Docker: we build the image, run the migrations and bring it up."


def node(nid, role, text, parent, children, **extra):
    message = None
    if role:
        message = {
            "id": nid,
            "author": {"role": role},
            "content": {"content_type": extra.pop("content_type", "text"), "parts": extra.pop("parts", [text])},
            "metadata": extra.pop("metadata", {}),
            "recipient": extra.pop("recipient", "all"),
        }
    return {"id": nid, "message": message, "parent": parent, "children": children}


def chatgpt_export(tmp_path):
    """Two conversations. The first was edited: the user rewrote the first question (branch u1 → u1b) and
    regenerated the answer on the new branch (a2 → a2b); current_node is on the last branch."""
    tree = {
        "root": node("root", None, None, None, ["sys"]),
        "sys": node("sys", "system", "You are ChatGPT.", "root", ["ctx"]),
        "ctx": node("ctx", "user", "custom instructions", "sys", ["u1", "u1b"], content_type="user_editable_context"),
        "u1": node("u1", "user", "Pergunta antiga que foi editada?", "ctx", ["a1"]),
        "a1": node("a1", "assistant", "Resposta do ramo abandonado.", "u1", []),
        "u1b": node("u1b", "user", PT_Q, "ctx", ["hid"]),
        "hid": node(
            "hid", "assistant", "", "u1b", ["tool_call"], metadata={"is_visually_hidden_from_conversation": True}
        ),
        "tool_call": node("tool_call", "assistant", "search('deploy')", "hid", ["tool"], recipient="browser"),
        "tool": node("tool", "tool", "results", "tool_call", ["a2", "a2b"]),
        "a2": node("a2", "assistant", "Primeira versão da resposta, regenerada.", "tool", []),
        "a2b": node("a2b", "assistant", None, "tool", ["u3"], parts=[PT_A, {"content_type": "image_asset_pointer"}]),
        "u3": node("u3", "user", "E o rollback?", "a2b", ["a3"]),
        "a3": node(
            "a3", "assistant", "O rollback é subir a imagem anterior, e as migrações do Prisma têm down.", "u3", []
        ),
    }
    conversations = [
        {"title": "deploy", "create_time": 1767225600.0, "id": "c-1", "mapping": tree, "current_node": "a3"},
        {
            "title": "english",
            "create_time": 1735689600.0,  # 2025-01-01
            "id": "c-2",
            "mapping": {
                "r": node("r", None, None, None, ["q"]),
                "q": node("q", "user", EN_Q, "r", ["a"]),
                "a": node("a", "assistant", EN_A, "q", []),
            },
            "current_node": "a",
        },
    ]
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(conversations))
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_chatgpt_follows_the_current_branch(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = import_conversations(chatgpt_export(tmp_path), out, ImportOptions())
    assert summary["format"] == "chatgpt"
    rows = read_rows(out)
    first = rows[0]["messages"]
    assert first == [
        {"role": "user", "content": PT_Q},
        {"role": "assistant", "content": PT_A},
        {"role": "user", "content": "E o rollback?"},
        {"role": "assistant", "content": "O rollback é subir a imagem anterior, e as migrações do Prisma têm down."},
    ]
    # PT_A came after the browser's results, which are left out: kept, and tagged for curation
    assert rows[0]["tags"] == ["imported", "conversation:conversations:c-1", "answer_after_removed_tool_result"]
    text = json.dumps(rows)
    for abandoned in ("Pergunta antiga", "ramo abandonado", "regenerada", "search(", "You are ChatGPT"):
        assert abandoned not in text
    assert summary["turns_skipped"] == {"hidden": 2, "system": 1, "tool": 2}
    assert summary["parts_skipped"] == {"image_asset_pointer": 1} and summary["flagged"] == {
        "answer_after_removed_tool_result": 1
    }
    assert len(load_dataset(out, "sistema")) == 2  # molting reads what it wrote


def test_filters_count_every_skip_by_reason(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = import_conversations(chatgpt_export(tmp_path), out, ImportOptions(language="pt"))
    assert summary["skipped"] == {"language_en": 1}
    summary = import_conversations(chatgpt_export(tmp_path), out, ImportOptions(since=date(2025, 6, 1)), overwrite=True)
    assert summary["skipped"] == {"before_since": 1} and summary["examples_written"] == 1
    summary = import_conversations(chatgpt_export(tmp_path), out, ImportOptions(keywords=["MIGRAÇÕES"]), overwrite=True)
    assert summary["examples_written"] == 1  # accents and case ignored: "migrações" matches
    summary = import_conversations(
        chatgpt_export(tmp_path), out, ImportOptions(keywords=["rollback", "nothing"]), overwrite=True
    )
    assert summary["skipped"] == {"no_keyword": 1}
    summary = import_conversations(chatgpt_export(tmp_path), out, ImportOptions(keywords=["DEPLOY"]), overwrite=True)
    assert summary["skipped"] == {} and summary["examples_written"] == 2
    # the short answer is dropped and splits the conversation: no example refers to what it lost
    summary = import_conversations(chatgpt_export(tmp_path), out, ImportOptions(min_answer_chars=80), overwrite=True)
    assert summary["turns_skipped"]["answer_too_short"] == 1
    assert [len(r["messages"]) for r in read_rows(out)] == [2, 2]


def test_claude_sharegpt_openai_prompt_completion(tmp_path):
    claude = tmp_path / "claude.json"
    claude.write_text(
        json.dumps(
            [
                {
                    "uuid": "cl-1",
                    "name": "deploy",
                    "created_at": "2026-03-01T10:00:00.000000Z",
                    "chat_messages": [
                        {"uuid": "m1", "sender": "human", "text": PT_Q, "content": [{"type": "text", "text": PT_Q}]},
                        {
                            "uuid": "m2",
                            "sender": "assistant",
                            "text": "",
                            "content": [
                                {"type": "text", "text": PT_A},
                                {"type": "tool_use", "name": "search", "input": {}},
                            ],
                        },
                    ],
                }
            ]
        )
    )
    sharegpt = tmp_path / "sharegpt.jsonl"
    sharegpt.write_text(
        json.dumps(
            {
                "conversations": [
                    {"from": "system", "value": "Você é um assistente."},
                    {"from": "human", "value": PT_Q},
                    {"from": "gpt", "value": PT_A},
                ]
            }
        )
        + "\n"
    )
    openai = tmp_path / "openai.jsonl"
    openai.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": PT_Q}]},
                    {"role": "assistant", "content": PT_A},
                ]
            }
        )
        + "\n"
    )
    pc = tmp_path / "pc.jsonl"
    pc.write_text(json.dumps({"prompt": PT_Q, "completion": PT_A}) + "\n")
    expected = [{"role": "user", "content": PT_Q}, {"role": "assistant", "content": PT_A}]
    for source, fmt in ((claude, "claude"), (sharegpt, "sharegpt"), (openai, "openai"), (pc, "prompt_completion")):
        out = tmp_path / f"{fmt}.out.jsonl"
        summary = import_conversations(source, out, ImportOptions())
        assert summary["format"] == fmt
        assert read_rows(out)[0]["messages"] == expected, fmt
    # --system keep and card
    out = tmp_path / "keep.jsonl"
    import_conversations(sharegpt, out, ImportOptions(system="keep"))
    assert read_rows(out)[0]["messages"][0] == {"role": "system", "content": "Você é um assistente."}
    import_conversations(sharegpt, out, ImportOptions(system="card", card_system_prompt="Você é o Cláudio."), True)
    assert read_rows(out)[0]["messages"][0] == {"role": "system", "content": "Você é o Cláudio."}


def test_until_removing_everything_is_a_user_error(tmp_path):
    claude = tmp_path / "claude.json"
    claude.write_text(
        json.dumps(
            [
                {
                    "uuid": "cl-1",
                    "created_at": "2026-03-01T10:00:00Z",
                    "chat_messages": [
                        {"sender": "human", "text": PT_Q, "content": []},
                        {"sender": "assistant", "text": PT_A, "content": []},
                    ],
                }
            ]
        )
    )
    with pytest.raises(UserError, match="after_until 1"):
        import_conversations(claude, tmp_path / "o.jsonl", ImportOptions(until=date(2026, 2, 1)))
    assert not (tmp_path / "o.jsonl").exists()


def test_long_conversation_split_to_the_character_budget(tmp_path):
    turns = []
    for i in range(6):
        turns += [{"from": "human", "value": f"pergunta {i} " + "x" * 80}, {"from": "gpt", "value": "y" * 100}]
    source = tmp_path / "long.jsonl"
    source.write_text(json.dumps({"conversations": turns}) + "\n")
    out = tmp_path / "data.jsonl"
    summary = import_conversations(source, out, ImportOptions(max_chars=400))
    rows = read_rows(out)
    # each exchange is 191 characters: two fit in 400, so six make three examples, in order
    assert [len(r["messages"]) for r in rows] == [4, 4, 4]
    assert rows[1]["messages"][0]["content"].startswith("pergunta 2")
    assert summary["conversations_split"] == 1
    # an exchange alone over the budget cannot be trained whole: left out and counted
    turns[2]["value"] = "curta?"
    turns[3]["value"] = "curta."
    source.write_text(json.dumps({"conversations": turns}) + "\n")
    summary = import_conversations(source, out, ImportOptions(max_chars=150), overwrite=True)
    assert summary["turns_skipped"] == {"exchange_over_budget": 5}
    assert [r["messages"][0]["content"] for r in read_rows(out)] == ["curta?"]


def test_split_to_the_token_budget_with_the_config(tmp_path, molting_cache):
    from molting.models.base_model import load_tokenizer
    from molting.models.chat_format import tokenize_conversation

    tokenizer = load_tokenizer("builtin:tiny")
    turns = []
    for i in range(8):
        turns += [{"from": "human", "value": f"{PT_Q} ({i})"}, {"from": "gpt", "value": PT_A}]
    source = tmp_path / "long.jsonl"
    source.write_text(json.dumps({"conversations": turns}) + "\n")
    for system in ("card", "drop"):  # dropped: training adds the card's prompt, so the budget counts it
        out = tmp_path / f"{system}.jsonl"
        options = ImportOptions(system=system, card_system_prompt=CARD_PROMPT, tokenizer=tokenizer, max_length=160)
        summary = import_conversations(source, out, options)
        assert summary["budget"] == {"limit": 160, "unit": "tokens"}
        conversations = load_dataset(out, CARD_PROMPT)
        assert len(conversations) > 1
        assert all(c.own_system_prompt == (system == "card") for c in conversations)
        lengths = [len(tokenize_conversation(tokenizer, c.messages).input_ids) for c in conversations]
        assert max(lengths) <= 160
        assert sum(len(c.messages) - 1 for c in conversations) == 16  # every turn kept, none duplicated


def test_malformed_jsonl_reported_with_line(tmp_path):
    source = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": PT_Q}, {"role": "assistant", "content": PT_A}]})
    source.write_text(
        good + "\n\n{not json\n" + json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n" + good + "\n"
    )
    out = tmp_path / "data.jsonl"
    with pytest.raises(UserError) as e:
        import_conversations(source, out, ImportOptions())
    assert f"{source}:3: not valid JSON" in e.value.problems[0]
    assert f"{source}:4: messages[0].role: unknown role 'robot'" in e.value.problems[1]
    assert not out.exists()
    summary = import_conversations(source, out, ImportOptions(skip_malformed=True))
    assert summary["skipped"] == {"malformed": 2} and summary["examples_written"] == 2
    assert len(summary["malformed"]) == 2


def test_malformed_chatgpt_conversation_reported_with_index_and_id(tmp_path):
    source = chatgpt_export(tmp_path)
    conversations = json.loads(source.read_text())
    conversations[1]["current_node"] = "missing"
    conversations[0]["mapping"]["u3"]["parent"] = "nowhere"
    source.write_text(json.dumps(conversations))
    with pytest.raises(UserError) as e:
        import_conversations(source, tmp_path / "o.jsonl", ImportOptions())
    assert e.value.problems[0] == (
        f"{source}: conversation #0 (id c-1): node 'nowhere': missing from mapping (a parent points to it) "
        "(format chatgpt)."
    )
    assert e.value.problems[1].startswith(f"{source}: conversation #1 (id c-2): current_node 'missing'")


def test_cli_table_json_and_exit_codes(tmp_path):
    source = chatgpt_export(tmp_path)
    out = tmp_path / "data.jsonl"
    result = run_molt("data", "import", source, "--out", out, "--language", "pt", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == {"language_en": 1} and summary["examples_written"] == 1
    result = run_molt("data", "import", source, "--out", out)
    assert result.returncode == 2 and "already exists" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('[{"mapping": {}, "current_node": "x"}')
    result = run_molt("data", "import", bad, "--out", tmp_path / "x.jsonl")
    assert result.returncode == 2 and f"{bad}:1: not valid JSON" in result.stderr and "Traceback" not in result.stderr
    result = run_molt(
        "data",
        "import",
        source,
        "--out",
        tmp_path / "card.jsonl",
        "--system",
        "card",
        "--persona",
        EXAMPLE / "persona.yaml",
    )
    assert result.returncode == 0, result.stderr
    assert "turns left out: hidden" in result.stdout and "examples written" in result.stdout
    assert read_rows(tmp_path / "card.jsonl")[0]["messages"][0]["content"].startswith("Você é o Cláudio")


# Real files from public repositories, cut down to a few records: tests/fixtures/import_samples/README.md
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "import_samples"


def test_claude_code_blocks_and_llamafactory_images_are_counted(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = import_conversations(SAMPLES / "claude_export_built.json", out, ImportOptions())
    assert summary["parts_skipped"] == {"code": 1, "thinking": 1}
    answer = read_rows(out)[0]["messages"][1]["content"]
    assert answer == "Use the csv module from the standard library:\n\nEach row comes back as a list of strings."
    summary = import_conversations(SAMPLES / "llamafactory_mllm_demo.json", out, ImportOptions(), overwrite=True)
    assert summary["format"] == "openai" and summary["parts_skipped"] == {"image": 3}
    first = read_rows(out)[0]["messages"]
    assert first[0] == {"role": "user", "content": "Who are they?"}  # the <image> placeholder goes with the image
    assert first[2] == {"role": "user", "content": "What are they doing?"}


def test_llamafactory_v1_value_parts_are_read(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = import_conversations(SAMPLES / "llamafactory_v1_messages.jsonl", out, ImportOptions())
    rows = read_rows(out)
    assert [r["messages"] for r in rows] == [
        [
            {"role": "user", "content": "What is LLM?"},
            {"role": "assistant", "content": "LLM stands for Large Language Model."},
        ],
        [{"role": "user", "content": "What is 6*8?"}, {"role": "assistant", "content": "The result of 6*8 is 48."}],
    ]
    # the tool_call turn and the tool's result are turns left out, counted; the answer after the result is flagged
    assert summary["turns_skipped"] == {"system": 2, "tool": 2} and summary["parts_skipped"] == {}
    assert summary["flagged"] == {"answer_after_removed_tool_result": 1}


def test_nothing_left_names_the_cause_not_the_filters(tmp_path):
    """A file whose turns hold no text a reader knows gets a hint at the format, not at --since/--until."""
    source = tmp_path / "odd.jsonl"
    parts = [{"type": "image_url", "image_url": {"url": "a.png"}}]
    source.write_text(
        json.dumps({"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": parts}]})
    )
    with pytest.raises(UserError) as e:
        import_conversations(source, tmp_path / "out.jsonl", ImportOptions())
    message = str(e.value)
    assert "--since" not in message and "Loosen" not in message
    assert "read as openai" in message and "image_url 2" in message and "--format" in message


def test_llamafactory_preference_file_is_refused_with_the_reason(tmp_path):
    with pytest.raises(UserError) as e:
        import_conversations(SAMPLES / "llamafactory_dpo_en_demo.json", tmp_path / "out.jsonl", ImportOptions())
    message = str(e.value)
    assert "conversation #0" in message and "a preference pair (keys: conversations, chosen, rejected)" in message
    assert "preference_data" in message and not (tmp_path / "out.jsonl").exists()


def test_a_json_object_file_is_one_message_saying_what_it_is(tmp_path):
    with pytest.raises(UserError) as e:
        import_conversations(SAMPLES / "llamafactory_dataset_info.json", tmp_path / "out.jsonl", ImportOptions())
    message = str(e.value)
    assert "LLaMA-Factory's dataset_info.json" in message and "identity.json" in message
    assert "not valid JSON" not in message and "\n" not in message  # one message, not one per line


def test_chatgpt_export_without_current_node_follows_the_latest_leaf(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = import_conversations(SAMPLES / "chatgpt_export_without_current_node.json", out, ImportOptions())
    assert summary["malformed"] == [] and summary["examples_written"] == 1
    messages = read_rows(out)[0]["messages"]
    # msg-5 ("Actually, … Python instead?") is an older leaf of an abandoned branch; msg-6 is the latest
    assert [m["content"][:30] for m in messages] == [
        "Hello! Can you help me with a ", "Of course! I'd be happy to hel",
        "How do I write a function in J", "Here's how to write a function",
    ]  # fmt: skip


def test_answers_after_a_removed_tool_result_are_counted_and_tagged(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = import_conversations(SAMPLES / "llamafactory_glaive_toolcall_en_demo.json", out, ImportOptions())
    assert summary["turns_skipped"] == {"tool": 2}  # the function_call and its observation
    assert summary["flagged"] == {"answer_after_removed_tool_result": 1}
    rows = read_rows(out)
    flagged = [r for r in rows if "answer_after_removed_tool_result" in r["tags"]]
    assert len(flagged) == 1 and any(m["content"].startswith("I found two recipes") for m in flagged[0]["messages"])
    assert "answer_after_removed_tool_result" not in rows[0]["tags"]


def test_fastchat_sharegpt_sample_imports_whole(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = import_conversations(SAMPLES / "fastchat_dummy_conversation.json", out, ImportOptions())
    assert summary["format"] == "sharegpt" and summary["examples_written"] == 2
    assert summary["turns_skipped"] == {} and summary["parts_skipped"] == {} and summary["flagged"] == {}
    assert read_rows(out)[1]["messages"][1]["content"].startswith("My name is Vicuna")


def test_stanford_alpaca_sample_imports_with_the_nooutput_record_counted(tmp_path):
    source = SAMPLES / "stanford_alpaca_data.json"
    records = json.loads(source.read_text(encoding="utf-8"))
    out = tmp_path / "data.jsonl"
    summary = import_conversations(source, out, ImportOptions())
    assert summary["format"] == "alpaca" and summary["records"] == len(records)
    # "Render a 3D model of a house" is answered "<nooutput> …": no answer to learn, so no example
    assert summary["turns_skipped"] == {"alpaca_nooutput": 1, "question_without_answer": 1}
    assert summary["skipped"] == {"no_exchange": 1} and summary["examples_written"] == len(records) - 1
    rows = read_rows(out)
    with_input = next(r for r in records if r["input"] == "Twitter, Instagram, Telegram")
    row = next(r for r in rows if r["messages"][0]["content"].startswith(with_input["instruction"]))
    # LLaMA-Factory's joining: the instruction, a newline, the input
    assert row["messages"] == [
        {"role": "user", "content": f"{with_input['instruction']}\n{with_input['input']}"},
        {"role": "assistant", "content": with_input["output"]},
    ]
    assert not any("<nooutput>" in m["content"] for r in rows for m in r["messages"])
    assert len(load_dataset(out, CARD_PROMPT)) == len(records) - 1


def test_llamafactory_alpaca_demo_and_its_system_and_history(tmp_path):
    out = tmp_path / "demo.jsonl"
    summary = import_conversations(SAMPLES / "llamafactory_alpaca_en_demo.json", out, ImportOptions())
    assert summary["format"] == "alpaca" and summary["examples_written"] == 10
    assert read_rows(out)[5]["messages"][0]["content"].endswith("\nSide 1 = 4\nSide 2 = 6\nSide 3 = 8")

    out = tmp_path / "history.jsonl"
    import_conversations(SAMPLES / "llamafactory_alpaca_readme_example.json", out, ImportOptions(system="keep"))
    (row,) = read_rows(out)
    assert [(m["role"], m["content"]) for m in row["messages"]] == [
        ("system", "system prompt (optional)"),
        ("user", "user instruction in the first round (optional)"),
        ("assistant", "model response in the first round (optional)"),
        ("user", "user instruction in the second round (optional)"),
        ("assistant", "model response in the second round (optional)"),
        ("user", "user instruction (required)\nuser input (optional)"),
        ("assistant", "model response (required)"),
    ]


def test_alpaca_forced_and_malformed_records_named_by_position(tmp_path):
    source = tmp_path / "alpaca.jsonl"
    source.write_text(
        json.dumps({"instruction": "Say hi", "output": "Hi!"})
        + "\n"
        + json.dumps({"instruction": "Say bye", "output": "Bye!", "history": [["only the question"]]})
        + "\n"
        + json.dumps({"instruction": "Count", "output": ["1", "2"]})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(UserError) as e:
        import_conversations(source, tmp_path / "out.jsonl", ImportOptions(format="alpaca"))
    assert f"{source}:2: history[0]: expected an [instruction, response] pair of texts" in str(e.value)
    assert f"{source}:3: output: expected text, got list (format alpaca)." in str(e.value)
    # read as sharegpt, the same file says what is missing, record by record
    with pytest.raises(UserError, match=r"alpaca.jsonl:1: conversations: expected a list"):
        import_conversations(source, tmp_path / "out.jsonl", ImportOptions(format="sharegpt"))
    result = run_molt("data", "import", source, "--out", tmp_path / "cli.jsonl", "--format", "alpaca")
    assert result.returncode == 2 and "history[0]" in result.stderr and "Traceback" not in result.stderr
