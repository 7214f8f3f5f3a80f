"""The local dashboard (`molt serve [RUNS_DIR]`): browse runs, compare them, and score answers by hand.

Reached through `create_app(runs_dir, host=, port=)` (a Starlette app inside `AccessGuard`; tests serve it with
uvicorn) and `serve(runs_dir, host, port)`. Pages are rendered on the server from the same Jinja2 templates as
report.html, with autoescaping; the scoring page's script (/static/score.js) posts each change as it is made,
so closing the browser loses nothing. Writes go through `molting.evaluate.human_scores` (file lock + atomic
rename). Only names of existing run and eval folders are accepted in URLs and query parameters
(`/compare?eval=` too), and a folder that is a symlink to somewhere outside RUNS_DIR is refused, so no
request reads or writes a file outside RUNS_DIR.

Only the dashboard's own pages get in (molting.report.dashboard_access): the Host header must name the
address served on, pages need the per-server token printed at start, and a write needs the dashboard's
Origin, the token in a header and a JSON body; every answer carries a Content-Security-Policy without inline
script. Binds 127.0.0.1 by default; another address needs `allow_remote=True` (`--allow-remote`), and a
warning is printed (plain HTTP: the token crosses the network in clear).
"""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from molting.errors import UserError
from molting.evaluate.human_scores import read_preference_pairs, save_preference_pair, set_human_score
from molting.report.dashboard_access import LOOPBACK_NAMES, WILDCARD, AccessGuard, new_token
from molting.report.html import compare_context, environment, question_texts, run_context
from molting.report.run_record import eval_ids, load_run

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def _inside(path: Path, root: Path) -> bool:
    """`path`, every symlink on the way resolved, lies in `root` (itself resolved)."""
    return path.resolve().is_relative_to(root)


def _child(parent: Path, name: str, what: str, root: Path) -> Path:
    """`parent/name` if `name` is a plain folder name that exists there and, symlinks resolved, lies inside
    `root` (RUNS_DIR): a link in the runs folder to a folder elsewhere is refused, for reads and writes."""
    if not _SAFE_NAME.match(name) or not (parent / name).is_dir() or not _inside(parent / name, root):
        raise LookupError(f"no {what} named {name!r} in {parent}")
    return parent / name


def list_runs(runs_dir: Path) -> list[dict]:
    """One row per run directory: base model, dataset, average score of its first evaluation, date."""
    rows = []
    root = runs_dir.resolve()
    for path in sorted(p for p in runs_dir.iterdir() if p.is_dir() and _SAFE_NAME.match(p.name) and _inside(p, root)):
        if not any((path / f).exists() for f in ("manifest.json", "config.yaml", "eval")):
            continue
        ids = eval_ids(path)
        try:
            record = load_run(path, ids[0] if ids else "final", require_scores=False)
        except UserError as e:  # one broken run must not hide the others
            rows.append(
                {
                    "name": path.name,
                    "base_model": None,
                    "dataset": f"unreadable: {e}",
                    "average": "–",
                    "evals": ids,
                    "date": "",
                }
            )
            continue
        config, manifest = record.config, record.manifest or {}
        data = config.get("data")
        examples = (manifest.get("train") or {}).get("examples")
        started = (manifest.get("timings") or {}).get("started")
        when = datetime.fromtimestamp(started or path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        rows.append(
            {
                "name": path.name,
                "base_model": config.get("base_model"),
                "dataset": ", ".join(Path(d).name for d in (data if isinstance(data, list) else [data] if data else []))
                + (f" ({examples} conversations)" if examples else ""),
                "average": f"{record.average:.2f} ({record.eval_id})" if record.average is not None else "–",
                "evals": ids,
                "date": when,
            }
        )
    return rows


def _persona(run_dir: Path):
    """The run's persona card: its inference system prompt went in front of the answers, and its forbidden
    claims are what a corrected answer must not make."""
    from molting.card.persona import load_persona
    from molting.config import load_resolved_config

    try:
        return load_persona(load_resolved_config(run_dir).persona)
    except OSError as e:
        raise UserError(f"{run_dir}: cannot read the run's persona card ({e}).") from None


# What /static/ serves: the style sheet and the scoring page's script, from the templates folder.
STATIC = {"dashboard.css": ("_style.css", "text/css"), "score.js": ("dash_score.js", "text/javascript")}


def create_app(
    runs_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8321, token: str | None = None
) -> AccessGuard:
    """The dashboard over `runs_dir`, to be served on `host`:`port` (the Host header must name them). `token`
    (default: a new random one) is what pages and writes need; the returned app's `url` carries it."""
    shown_as = str(runs_dir)  # as the user typed it, in the page header
    runs_dir = Path(runs_dir).resolve()
    env = environment()
    token = token or new_token()
    static = {name: (env.get_template(source).render(), kind) for name, (source, kind) in STATIC.items()}

    def page(template: str, status: int = 200, **context) -> HTMLResponse:
        html = env.get_template(template).render(runs_dir=shown_as, token=token, **context)
        return HTMLResponse(html, status_code=status)

    def error_page(heading: str, problems: list[str], status: int) -> HTMLResponse:
        return page("dash_error.html", status, heading=heading, problems=problems)

    def refusal_page(heading: str, message: str, status: int) -> HTMLResponse:
        html = env.get_template("dash_error.html").render(
            runs_dir=shown_as, token=None, heading=heading, problems=[message]
        )
        return HTMLResponse(html, status_code=status)

    async def static_file(request: Request):
        found = static.get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(found[0], media_type=found[1])

    def eval_dir(request: Request) -> tuple[Path, Path]:
        run = _child(runs_dir, request.path_params["run"], "run", runs_dir)
        return run, _child(run / "eval", request.path_params["eval_id"], "evaluation", runs_dir)

    async def runs_list(request: Request):
        return page("dash_runs.html", runs=await run_in_threadpool(list_runs, runs_dir))

    async def run_page(request: Request):
        try:
            run = _child(runs_dir, request.path_params["run"], "run", runs_dir)
            context = await run_in_threadpool(run_context, run)
        except LookupError as e:
            return error_page("Not found", [str(e)], 404)
        except UserError as e:
            return error_page("Cannot show this run", e.problems, 400)
        context["score_url"] = lambda eval_id: f"/runs/{run.name}/score/{eval_id}"
        return page("dash_run.html", **context)

    async def compare_page(request: Request):
        names = request.query_params.getlist("run")
        eval_id = request.query_params.get("eval") or "final"
        try:
            dirs = [_child(runs_dir, n, "run", runs_dir) for n in names]
            for d in dirs:  # the eval id is a folder name too, never a path
                _child(d / "eval", eval_id, "evaluation", runs_dir)
            context = await run_in_threadpool(compare_context, dirs, eval_id)
        except LookupError as e:
            return error_page("Not found", [str(e)], 404)
        except UserError as e:
            return error_page("Cannot compare these runs", e.problems, 400)
        return page("dash_compare.html", **context)

    async def score_page(request: Request):
        try:
            run, edir = eval_dir(request)
            record = await run_in_threadpool(load_run, run, edir.name)
        except LookupError as e:
            return error_page("Not found", [str(e)], 404)
        except UserError as e:
            return error_page("Cannot score this evaluation", e.problems, 400)
        pairs = {
            p["id"].rsplit("/", 1)[-1]: p["chosen"][0]["content"] for p in read_preference_pairs(edir) if "id" in p
        }
        return page(
            "dash_score.html",
            name=run.name,
            eval_id=edir.name,
            run=record,
            questions_text=question_texts(record),
            pairs=pairs,
            api_base=f"/api/runs/{run.name}/eval/{edir.name}",
        )

    async def _answer(request: Request):
        """(run dir, eval dir, request body, the answer it names) or a JSON error response."""
        try:
            run, edir = eval_dir(request)
        except LookupError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        if not isinstance(body, dict) or not isinstance(body.get("answer_id"), str):
            return JSONResponse({"error": "answer_id (a string) is required"}, status_code=400)
        try:
            record = await run_in_threadpool(load_run, run, edir.name)
        except UserError as e:  # e.g. a manual_scores.json edited by hand into something invalid
            return JSONResponse({"error": " ".join(e.problems)}, status_code=400)
        answer = next((a for a in record.answers if a.answer_id == body["answer_id"]), None)
        if answer is None:
            return JSONResponse({"error": f"no answer {body['answer_id']!r} in {edir.name}"}, status_code=404)
        return run, edir, body, answer

    async def api_score(request: Request):
        found = await _answer(request)
        if isinstance(found, JSONResponse):
            return found
        _, edir, body, answer = found
        value, note = body.get("value"), body.get("note")
        if note is not None and not isinstance(note, str):
            return JSONResponse({"error": "note must be text"}, status_code=400)
        if note is not None and len(note) > MAX_NOTE_CHARS:
            return JSONResponse({"error": f"a note holds at most {MAX_NOTE_CHARS:,} characters"}, status_code=400)
        try:
            entry = await run_in_threadpool(set_human_score, edir, answer.answer_id, body.get("dim"), value, note)
        except UserError as e:
            return JSONResponse({"error": " ".join(e.problems)}, status_code=400)
        return JSONResponse({"answer_id": answer.answer_id, "saved": entry})

    async def api_reject(request: Request):
        found = await _answer(request)
        if isinstance(found, JSONResponse):
            return found
        run, edir, body, answer = found
        chosen = body.get("chosen")
        if not isinstance(chosen, str):
            return JSONResponse({"error": "chosen (the right answer, as text) is required"}, status_code=400)
        try:
            persona = await run_in_threadpool(_persona, run)
            pair = await run_in_threadpool(
                save_preference_pair, edir, answer.answer_id, persona, answer.prompt or "", answer.response, chosen
            )
        except UserError as e:
            return JSONResponse({"error": " ".join(e.problems)}, status_code=400)
        return JSONResponse({"saved": pair})

    routes = [
        Route("/", runs_list),
        Route("/runs/{run}", run_page),
        Route("/compare", compare_page),
        Route("/runs/{run}/score/{eval_id}", score_page),
        Route("/api/runs/{run}/eval/{eval_id}/score", api_score, methods=["POST"]),
        Route("/api/runs/{run}/eval/{eval_id}/reject", api_reject, methods=["POST"]),
        Route("/static/{name}", static_file),
    ]
    return AccessGuard(Starlette(routes=routes), host, port, token, refusal_page)


MAX_BODY_BYTES = 1_000_000  # a score, a note or a corrected answer: far below this
MAX_NOTE_CHARS = 10_000


async def _json_body(request: Request):
    """The request's JSON body, or a 4xx JSONResponse: too large (413), not JSON, nested too deep, or holding
    text that is not Unicode (a lone surrogate, which no file can store) (400)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return JSONResponse({"error": f"the request body is over {MAX_BODY_BYTES:,} bytes"}, status_code=413)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"the request body is over {MAX_BODY_BYTES:,} bytes"}, status_code=413)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return JSONResponse({"error": "the request body is not JSON (or is nested too deep)"}, status_code=400)
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return JSONResponse({"error": "the request body holds text that is not valid Unicode"}, status_code=400)
    return body


def check_host(host: str, allow_remote: bool) -> str | None:
    """A warning to print for a non-loopback address, or UserError if it was not explicitly allowed."""
    if host in LOOPBACK_NAMES or host.startswith("127."):
        return None
    if not allow_remote:
        raise UserError(
            f"--host {host}: the dashboard speaks plain HTTP (no TLS), so on a network anyone who sees its traffic "
            "can read every answer and the token that lets them change scores. It listens on 127.0.0.1 only "
            "unless you also pass --allow-remote."
        )
    return (
        f"WARNING: listening on {host} over plain HTTP: anyone on the network path can read every answer, and "
        "the token in the address, which lets them change scores and preference pairs. Use only on a network "
        "you trust."
    )


def serve(runs_dir: str | Path, host: str = "127.0.0.1", port: int = 8321, say=print) -> None:
    import uvicorn

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"{runs_dir}: no such folder. Give the folder holding your run directories (default: runs).")
    app = create_app(runs_dir, host=host, port=port)
    say("molting dashboard: open this address (its token lets your browser in; it changes at every start):")
    say(f"    {app.url}")
    if host in WILDCARD:
        say(f"(listening on every address of this machine: use one of its IP addresses instead of {host})")
    say("Ctrl-C to stop.")
    uvicorn.run(app, host=host, port=port, log_level="warning")
