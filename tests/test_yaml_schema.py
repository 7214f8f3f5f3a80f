"""`molt config schema`: the JSON Schemas of molt.yaml, persona.yaml and suite.yaml, checked with the
jsonschema package against every shipped project file (the example and `molt init`'s template), and
against mistakes that molting's own loader refuses too, so the schemas and the loader cannot drift apart."""

import copy
import json

import jsonschema
import pytest
import yaml
from conftest import EXAMPLE, REPO, run_molt

from molting.config import TrainSettings, load_run_config
from molting.errors import UserError
from molting.yaml_schema import json_schema

TEMPLATE = REPO / "src" / "molting" / "card" / "project_template"
SHIPPED = [
    ("molt", EXAMPLE / "molt.yaml"),
    ("molt", EXAMPLE / "molt-gemma.yaml"),
    ("persona", EXAMPLE / "persona.yaml"),
    ("suite", EXAMPLE / "suite.yaml"),
    ("molt", TEMPLATE / "molt.yaml"),
    ("persona", TEMPLATE / "persona.yaml"),
    ("suite", TEMPLATE / "suite.yaml"),
]


def validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json_schema(kind)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize(("kind", "path"), SHIPPED, ids=[f"{p.parent.name}/{p.name}" for _, p in SHIPPED])
def test_every_shipped_file_fits_its_schema(kind, path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(kind).iter_errors(data)]
    assert errors == []


def _errors(kind: str, data) -> list[str]:
    return [e.message for e in validator(kind).iter_errors(data)]


def test_a_wrong_type_or_an_unknown_key_is_refused_by_the_schema_and_by_molting(tmp_path):
    example = yaml.safe_load((EXAMPLE / "molt.yaml").read_text(encoding="utf-8"))
    mistakes = [
        ("train.epochs=many", lambda d: d["train"].__setitem__("epochs", "many"), "is not valid under any"),
        ("train.epoch=2", lambda d: d["train"].__setitem__("epoch", 2), "'epoch' was unexpected"),
        ("lora.r=2.5", lambda d: d.setdefault("lora", {}).__setitem__("r", 2.5), "is not of type 'integer'"),
        ("train.method=ppo", lambda d: d["train"].__setitem__("method", "ppo"), "is not one of"),
        ("judge.response_format=json", lambda d: d.setdefault("judge", {}).__setitem__("response_format", "json"), ""),
        ("checks.min_steps=1", lambda d: d.__setitem__("checks", {"min_steps": 1}), "'checks' was unexpected"),
    ]
    for override, mutate, message in mistakes:
        data = copy.deepcopy(example)
        mutate(data)
        errors = _errors("molt", data)
        assert errors and message in " ".join(errors), (override, errors)
        config = tmp_path / "molt.yaml"
        (tmp_path / "molt.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        for name in ("persona.yaml", "suite.yaml", "data.jsonl"):
            (tmp_path / name).write_bytes((EXAMPLE / name).read_bytes())
        with pytest.raises(UserError):  # molting refuses the same file
            load_run_config(config)
    # what molting accepts, the schema accepts: a learning rate written 2e-4 (PyYAML reads it as text)
    data = copy.deepcopy(example)
    data["train"]["learning_rate"] = "2e-4"
    assert _errors("molt", data) == []
    assert _errors("molt", {**data, "train": {**data["train"], "learning_rate": "fast"}})


def test_a_wrong_persona_or_suite_is_refused():
    persona = yaml.safe_load((EXAMPLE / "persona.yaml").read_text(encoding="utf-8"))
    assert _errors("persona", {**persona, "language": "fr"}) == ["'fr' is not one of ['pt', 'en']"]
    claim = {**persona["forbidden_claims"][0], "category": "rudeness"}
    assert _errors("persona", {**persona, "forbidden_claims": [claim]})
    assert _errors("persona", {**persona, "facts": [{"id": "x", "text": "y"}]}) == ["'shows' is a required property"]
    suite = yaml.safe_load((EXAMPLE / "suite.yaml").read_text(encoding="utf-8"))
    question = {k: v for k, v in suite["questions"][0].items() if k != "question"}
    assert _errors("suite", {"questions": [question]}) == ["'question' is a required property"]
    assert _errors("suite", {"questions": [{**suite["questions"][0], "must_mention": "joao_partner"}]})
    assert _errors("suite", {**suite, "version": 2}) == [
        "Additional properties are not allowed ('version' was unexpected)"
    ]


def test_descriptions_and_defaults_come_from_the_code():
    train = json_schema("molt")["properties"]["train"]["properties"]
    (max_length,) = [f for f in TrainSettings.__dataclass_fields__.values() if f.name == "max_length"]
    assert train["max_length"]["description"] == max_length.metadata["help"]
    assert train["max_length"]["default"] == 1024 and train["max_length"]["type"] == "integer"
    assert train["lr_scheduler"]["enum"] == ["linear", "cosine", "constant", "constant_with_warmup"]
    fact = json_schema("persona")["properties"]["facts"]["items"]
    assert fact["required"] == ["id", "text", "shows"]
    assert fact["properties"]["shows"]["description"].startswith("regexes (accent-free, case-insensitive)")
    assert "questions the fact answers" in fact["properties"]["questions"]["description"]  # a comment above


def test_molt_config_schema_writes_the_files(tmp_path):
    result = run_molt("config", "schema", "--out", tmp_path / "schemas")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert written == ["molt.schema.json", "persona.schema.json", "suite.schema.json"]
    for kind in ("molt", "persona", "suite"):
        assert json.loads((tmp_path / "schemas" / f"{kind}.schema.json").read_text()) == json_schema(kind)
    result = run_molt("config", "schema", "--out", tmp_path / "one", "--kind", "suite")
    assert result.returncode == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["suite.schema.json"]
    result = run_molt("config", "schema", "--kind", "data")
    assert result.returncode == 2 and "'data' is not one of" in result.stderr
