"""`molt doctor`: offline diagnosis on real files: a modules cache holding stale
remote code, and model folders with and without remote code."""

import json

from conftest import run_molt

from molting.models.doctor import diagnose, remote_code_check, stale_rope_code

OLD_PHI3 = 'class Phi3RotaryEmbedding:\n    def __init__(self, config):\n        kind = config.rope_scaling["type"]\n'
FIXED_PHI3 = 'kind = config.rope_scaling.get("type") or config.rope_scaling.get("rope_type", "default")\n'


def test_stale_rope_code_in_the_modules_cache_is_found(tmp_path, monkeypatch):
    stale = tmp_path / "transformers_modules" / "microsoft" / "Phi-3-mini-4k-instruct" / "abc123"
    stale.mkdir(parents=True)
    (stale / "modeling_phi3.py").write_text(OLD_PHI3)
    patched = tmp_path / "transformers_modules" / "other" / "def456"
    patched.mkdir(parents=True)
    (patched / "modeling_phi3.py").write_text(FIXED_PHI3)
    assert stale_rope_code(tmp_path) == [stale / "modeling_phi3.py"]

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path))
    finding = next(f for f in diagnose()["findings"] if f["check"] == "stale_remote_code")
    assert finding["level"] == "warning" and "modeling_phi3.py" in finding["message"]
    assert str(stale) in finding["fix"]


def test_native_model_with_remote_code_is_flagged(tmp_path):
    model = tmp_path / "phi3"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"model_type": "phi3", "auto_map": {"AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"}})
    )
    finding = remote_code_check(str(model))
    assert finding.level == "warning" and "implemented natively" in finding.message and "auto_map" in finding.message


def test_remote_only_and_unknown_architectures(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "my_new_arch", "auto_map": {"AutoConfig": "x.Y"}}))
    assert "only as remote code" in remote_code_check(str(remote)).message
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "my_new_arch"}))
    assert remote_code_check(str(unknown)).level == "error"


def test_doctor_cli_json_offline(tmp_path):
    result = run_molt("doctor", "--json", "--model", "builtin:tiny")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["transformers"] and report["versions"]["torch"]
    assert "available" in report["cuda"]
    checks = {f["check"]: f for f in report["findings"]}
    assert checks["remote_code"]["level"] == "ok"
    assert checks["4bit_load_spike"]["message"].startswith("transformers 5")
