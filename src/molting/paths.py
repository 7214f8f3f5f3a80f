"""The run directory's layout, in one place.

Every stage reads and writes the files of `runs/<name>/` (DESIGN.md, "The run directory") through
`RunPaths` and `EvalPaths`, so the names below are the only spelling of that layout in the code:

    runs/<name>/
      config.yaml  manifest.json  preflight.json  train_log.jsonl
      adapter/  checkpoints/  export/<target>/
      eval/<eval-id>/  responses.jsonl  responses.partial.jsonl  scores.json  manual_scores.json
                       logprob.json  preference_pairs.jsonl  judge_cache/
      report.md  report.html  loss.png  tensorboard/ (train.report_to: tensorboard)
"""

from dataclasses import dataclass
from pathlib import Path


def run_dir_for(config_path: str | Path, name: str | None, runs_dir: str | Path) -> Path:
    """Where a command given CONFIG puts its run: RUNS_DIR/NAME, NAME defaulting to the config's folder name."""
    return Path(runs_dir) / (name or Path(config_path).resolve().parent.name)


@dataclass(frozen=True, order=True)
class EvalPaths:
    """One evaluation's folder, `RUN/eval/<eval-id>/`."""

    dir: Path

    @property
    def name(self) -> str:
        """The evaluation's id: final, base, …"""
        return self.dir.name

    @property
    def responses(self) -> Path:
        return self.dir / "responses.jsonl"

    @property
    def partial_responses(self) -> Path:
        """Answers of an evaluation still running (or interrupted); the next run reuses them."""
        return self.dir / "responses.partial.jsonl"

    @property
    def scores(self) -> Path:
        return self.dir / "scores.json"

    @property
    def manual_scores(self) -> Path:
        return self.dir / "manual_scores.json"

    @property
    def scoring_sheet(self) -> Path:
        """The CSV `molt scores sheet` writes for a person to fill in."""
        return self.dir / "scoring_sheet.csv"

    @property
    def logprob(self) -> Path:
        return self.dir / "logprob.json"

    @property
    def preference_pairs(self) -> Path:
        """Pairs saved from the dashboard: a person's right answer against a rejected one."""
        return self.dir / "preference_pairs.jsonl"

    @property
    def judge_cache(self) -> Path:
        return self.dir / "judge_cache"


@dataclass(frozen=True)
class RunPaths:
    """A run directory, `runs/<name>/`."""

    dir: Path

    def __init__(self, run_dir: str | Path):
        object.__setattr__(self, "dir", Path(run_dir))

    @property
    def config(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def preflight(self) -> Path:
        return self.dir / "preflight.json"

    @property
    def train_log(self) -> Path:
        return self.dir / "train_log.jsonl"

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def adapter_weights(self) -> Path:
        return self.adapter / "adapter_model.safetensors"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def evals(self) -> Path:
        return self.dir / "eval"

    def eval(self, eval_id: str) -> EvalPaths:
        return EvalPaths(self.evals / eval_id)

    def eval_ids(self) -> list[str]:
        """Evaluations that finished (they have a scores.json), in name order."""
        return sorted(p.parent.name for p in self.evals.glob("*/scores.json"))

    def export(self, target: str) -> Path:
        return self.dir / "export" / target

    @property
    def report_md(self) -> Path:
        return self.dir / "report.md"

    @property
    def report_html(self) -> Path:
        return self.dir / "report.html"

    @property
    def loss_png(self) -> Path:
        return self.dir / "loss.png"

    @property
    def tensorboard(self) -> Path:
        return self.dir / "tensorboard"
