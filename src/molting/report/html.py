"""report.html: one self-contained HTML file per run (`molt report RUN`) and per comparison
(`molt compare ... --html FILE`), and the page contexts the dashboard (`molt serve`) renders with the
same templates.

Self-contained: the CSS is inline and the loss curve is a base64 PNG, so the file can be mailed or
attached to an issue. Model output is untrusted text: every template is rendered with Jinja2
autoescaping, and the evidence highlighter escapes the answer before marking it, so an answer holding
`<script>` or an `onerror=` attribute is shown as those characters and runs nothing.
"""

import base64
import re
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from molting.errors import UserError
from molting.evaluate.rubric import DIMENSION_NAMES, DIMENSIONS
from molting.io import write_text_atomic
from molting.paths import RunPaths
from molting.report.compare import (
    FACT_ROWS,
    TAIL_ROWS,
    compare_runs,
    fact_rows,
    fmt_value,
    loss_curves_png,
    rubric_header,
    rubric_rows,
    run_facts,
    verdict_lines,
)
from molting.report.markdown import VERDICT_RULE, trained_vs_base
from molting.report.run_record import RunRecord, eval_ids, load_run

# Detectors whose evidence names what is missing or describes the answer, rather than quoting it:
# their detail ("stack", a fact id) must not mark a word of the answer that happens to match.
NOT_QUOTED = {"missing_fact", "no_trait", "language_unrecognised", "wrong_language", "no_answer", "prompt_leak"}


def highlight(text: str, evidence: list[dict]) -> Markup:
    """`text` escaped, with every stretch that a detector matched wrapped in <mark> (named in its title).
    A detail is searched whole, by its comma-separated parts ("Carla, Lumera") and after its label
    ("ends mid-sentence: ...")."""
    spans: list[tuple[int, int, str]] = []
    for e in evidence or []:
        if e.get("detector") in NOT_QUOTED:
            continue
        detail = str(e.get("detail") or "")
        for needle in {detail, *detail.split(", "), detail.split(": ", 1)[-1]}:
            needle = needle.strip()
            if len(needle) < 2:
                continue
            for m in re.finditer(re.escape(needle), text, flags=re.IGNORECASE):
                spans.append((m.start(), m.end(), f"{e.get('dim')} {e.get('detector')}"))
    spans.sort()
    out, pos = [], 0
    for start, end, label in spans:
        if start < pos:  # overlaps a stretch already marked
            continue
        out.append(escape(text[pos:start]))
        out.append(Markup('<mark title="{}">{}</mark>').format(label, text[start:end]))
        pos = end
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("molting.report", "templates"),
        autoescape=True,  # every template: model output is untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["highlight"] = highlight
    env.globals["dims"] = DIMENSIONS
    env.globals["dimension_names"] = DIMENSION_NAMES
    env.globals["ci"] = lambda ci: f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return env


def png_b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data else None


def question_texts(run: RunRecord) -> dict[str, str]:
    """Question text per id, from the run's responses (each row keeps its prompt)."""
    out: dict[str, str] = {}
    for a in run.answers:
        out.setdefault(a.question_id, a.prompt)
    return out


def run_context(run_dir: str | Path) -> dict:
    """Everything the run page shows: config/training table, loss curve, every evaluation."""
    run_dir = Path(run_dir)
    ids = eval_ids(run_dir)
    first = load_run(run_dir, ids[0] if ids else "final", require_scores=False)
    if not first.manifest and not ids:
        raise UserError(f"{run_dir}: nothing to report (no manifest.json and no eval/). Run molt train / molt eval.")
    evals = [first] + [load_run(run_dir, i) for i in ids[1:]] if ids else []
    facts = run_facts(first)
    rows = [[label, fmt_value(facts[key])] for label, key in FACT_ROWS]
    rows += [[f"Loss at end of epoch {e + 1}", fmt_value(v)] for e, v in enumerate(facts["loss_by_epoch"])]
    if any(v is not None for v in facts["eval_loss_by_epoch"]):
        rows += [
            [f"Held-out loss at end of epoch {e + 1}", fmt_value(v)] for e, v in enumerate(facts["eval_loss_by_epoch"])
        ]
    training = ("final_loss", "peak_memory_mb", "train_seconds")  # the eval rows are in each eval's table
    if facts["eval_data"]:  # the held-out loss, in a run trained with eval_data
        training += ("eval_data", "final_eval_loss", "best_eval_loss", "best_eval_epoch")
    rows += [[label, fmt_value(facts[key])] for label, key in TAIL_ROWS if key in training]
    config_path = RunPaths(run_dir).config
    texts: dict[str, str] = {}
    for r in evals:
        texts.update({k: v for k, v in question_texts(r).items() if v})
    return {
        "name": run_dir.name,
        "title": f"molting report — {run_dir.name}",
        "fact_rows": rows,
        "config_text": config_path.read_text(encoding="utf-8") if config_path.is_file() else "",
        "loss_png": png_b64(loss_curves_png({run_dir.name: first.log}, f"{run_dir.name}")) if first.log else None,
        "evals": evals,
        "versus_base": trained_vs_base(
            *(next((r.scores for r in evals if r.eval_id == i), None) for i in ("final", "base"))
        ),
        "verdict_rule": VERDICT_RULE,
        "questions_text": texts,
        "open_answers": True,
        "score_url": None,
    }


def compare_context(run_dirs: list[str | Path], eval_id: str = "final") -> dict:
    result = compare_runs(run_dirs, eval_id)
    runs = [load_run(d, eval_id) for d in run_dirs]
    texts: dict[str, str] = {}
    for r in runs:
        texts.update({k: v for k, v in question_texts(r).items() if v})
    curves = {name: r.log for name, r in zip(result["runs"], runs, strict=True)}
    return {
        "result": result,
        "runs": runs,
        "verdicts": verdict_lines(result),
        "fact_rows": fact_rows(result),
        "rubric_header": rubric_header(result),
        "rubric_rows": rubric_rows(result),
        "loss_png": png_b64(loss_curves_png(curves, "training loss")) if any(curves.values()) else None,
        "question_ids": [q["id"] for q in result["questions"]],
        "questions_text": texts,
    }


def write_run_html(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    path = RunPaths(run_dir).report_html
    write_text_atomic(path, environment().get_template("report.html").render(**run_context(run_dir)))
    return path


def write_compare_html(run_dirs: list[str | Path], out: str | Path, eval_id: str = "final") -> Path:
    html = environment().get_template("compare_report.html").render(**compare_context(run_dirs, eval_id))
    write_text_atomic(out, html)
    return Path(out)
