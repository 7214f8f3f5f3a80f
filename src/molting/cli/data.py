"""`molt data import|distil|curate` and `molt augment`: training data."""

import json
import sys
from pathlib import Path

import click

from molting.cli import tables
from molting.cli.options import console, err_console, load_config, quiet_libraries, set_option
from molting.errors import UserError


@click.command(short_help="Corrective data from the card: restatements, pairs.")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for corrective.jsonl and pairs.jsonl. Default: the persona card's folder.",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of the paraphrase draw: same card and seed, same files."
)
@click.option("--per-fact", default=8, show_default=True, help="Restatement examples drawn per fact.")
@click.option(
    "--from-eval",
    "from_eval",
    type=click.Path(file_okay=False),
    help="Also harvest pairs from this run's evaluations: its failed answers (rejected) against the suite's "
    "reference (chosen), and pairs saved by the dashboard.",
)
@click.option("--overwrite", is_flag=True, help="Replace corrective.jsonl and pairs.jsonl if they exist.")
def augment(source, out, seed, per_fact, from_eval, overwrite):
    """Corrective data from a persona card (SOURCE: persona.yaml, or a molt.yaml naming one): positive
    restatements of its facts for SFT, and preference pairs against its forbidden claims for DPO.

    \b
    Writes OUT/corrective.jsonl (SFT conversations tagged corrective, never a negated forbidden claim:
    training on "não é meu filho" teaches "meu filho") and OUT/pairs.jsonl (prompt/chosen/rejected, from
    the card's non-held-out log-prob probes, and with --from-eval from a run's failed answers).
    Example:
      molt augment examples/claudio/molt.yaml --out corrective/
      molt augment examples/claudio/molt.yaml --from-eval runs/demo --out corrective/ --overwrite
    Then set train.method: sft+dpo (or orpo) and preference_data: corrective/pairs.jsonl in molt.yaml.
    """
    from molting.data.augment import PAIR_SOURCES, augment_source

    result = augment_source(source, out, seed, per_fact, from_eval, overwrite)
    for note in result["notes"]:
        console.print(note, highlight=False)
    for d in result["dropped"]:
        console.print(f"[yellow]dropped[/] {d.get('id') or d.get('answer')!r}: makes {', '.join(d['claims'])}")
    if result["claims_without_probes"]:
        console.print(
            f"[yellow]no pairs[/] for {', '.join(result['claims_without_probes'])}: add `probes` to these "
            "forbidden claims in the card."
        )
    console.print(f"wrote {result['sft']} ({result['sft_examples']} SFT examples)")
    console.print(f"wrote {result['pairs']} ({result['pair_count']} pairs)")
    for source, count in result["pair_sources"].items():
        console.print(f"  {count:>5} {source:<9} {PAIR_SOURCES[source]}", highlight=False)


@click.group(short_help="Training data: import chats, distil a model, curate.")
def data():
    """Training data from where a persona lives: import chat exports, distil a model, curate the result.

    \b
      molt data import EXPORT --out data.jsonl    chat exports and JSONL datasets into data.jsonl
      molt data distil --url URL --model M ...    ask the source model, write its answers as data
      molt data curate --config molt.yaml         dedupe, split, balance, length and leakage report
    """


@data.command("import", short_help="Import chat exports or JSONL into data.jsonl.")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the data (JSONL).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["openai", "sharegpt", "chatgpt", "claude", "prompt_completion", "alpaca"]),
    help="Format of SOURCE. Default: detected from its first record.",
)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Keep conversations created on or after this day.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Keep conversations created on or before this day.")
@click.option(
    "--language", type=click.Choice(["pt", "en", "es"]), help="Keep conversations in this language (function words)."
)
@click.option("--keyword", "keywords", multiple=True, help="Keep conversations mentioning this (repeatable: any).")
@click.option(
    "--min-answer-chars",
    default=0,
    show_default=True,
    help="Drop exchanges whose answer is shorter; the conversation is split there.",
)
@click.option(
    "--system",
    type=click.Choice(["drop", "keep", "card"]),
    default="drop",
    show_default=True,
    help="The source's system prompts: drop them (training adds the card's), keep them, or write the card's.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="molt.yaml: split to its max_length in tokens of its base's tokenizer, and its persona for --system card.",
)
@set_option
@click.option("--persona", type=click.Path(dir_okay=False), help="Persona card for --system card (without --config).")
@click.option(
    "--max-chars", default=6000, show_default=True, help="Budget per example in characters when no --config is given."
)
@click.option("--skip-malformed", is_flag=True, help="Count and skip malformed records instead of stopping.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_import(
    source,
    out,
    fmt,
    since,
    until,
    language,
    keywords,
    min_answer_chars,
    system,
    config,
    overrides,
    persona,
    max_chars,
    skip_malformed,
    overwrite,
    as_json,
):
    """Import the conversations in SOURCE (a chat export or a JSONL dataset) into molting's data.jsonl.

    \b
    Formats: OpenAI messages JSONL, ShareGPT (LLaMA-Factory's too), the ChatGPT export's
    conversations.json (the branch you last saw), the Claude export's conversations.json,
    prompt/completion JSONL, Alpaca instruction/input/output (with LLaMA-Factory's system and history).
    Every skipped conversation and turn is counted by reason; a malformed record stops the import with
    its position (file:line, or conversation index and id) unless --skip-malformed.

    \b
    Example:
      molt data import ~/Downloads/conversations.json --out my-persona/imported.jsonl \\
           --language pt --since 2026-01-01 --min-answer-chars 80 --config my-persona/molt.yaml
    """
    from molting.card.persona import load_persona
    from molting.data.chat_import import ImportOptions, import_conversations
    from molting.models.base_model import config_tokenizer

    tokenizer = max_length = card_prompt = None
    if config:
        quiet_libraries()
        cfg = load_config(config, overrides)
        tokenizer, max_length = config_tokenizer(cfg)
        card_prompt = load_persona(cfg.persona).system_prompts.train
    elif persona:
        card_prompt = load_persona(persona).system_prompts.train
    options = ImportOptions(
        format=fmt,
        since=since.date() if since else None,
        until=until.date() if until else None,
        language=language,
        keywords=list(keywords),
        min_answer_chars=min_answer_chars,
        system=system,
        card_system_prompt=card_prompt,
        max_chars=max_chars,
        tokenizer=tokenizer,
        max_length=max_length,
        skip_malformed=skip_malformed,
    )
    with err_console.status(f"importing {source}"):
        summary = import_conversations(source, out, options, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    tables.print_import_summary(summary, source)
    console.print(f"wrote {out}")


def _card(config: str | None, persona: str | None, option_hint: str):
    from molting.card.persona import load_persona

    if config:
        return load_persona(load_config(config, ()).persona)
    if persona:
        return load_persona(persona)
    raise UserError(f"{option_hint} needs the persona card: pass --config molt.yaml or --persona persona.yaml.")


@data.command("distil", short_help="Ask a source model the persona's questions.")
@click.option("--config", type=click.Path(dir_okay=False), help="molt.yaml whose persona card to use.")
@click.option("--persona", type=click.Path(dir_okay=False), help="Persona card (instead of --config).")
@click.option(
    "--questions",
    type=click.Path(dir_okay=False),
    help="Questions to ask: .txt (one a line) or .jsonl ({question, id}). Default: generated from the card.",
)
@click.option("--paraphrases", default=2, show_default=True, help="Generated phrasings per card item.")
@click.option("--seed", default=0, show_default=True, help="Picks the generated phrasings; also sent to the endpoint.")
@click.option("--list-questions", is_flag=True, help="Print the questions and exit without asking anything.")
@click.option("--url", help="OpenAI-compatible endpoint up to /v1, e.g. http://127.0.0.1:8080/v1.")
@click.option("--model", help="Model name as the endpoint knows it.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key (never passed on the command line).",
)
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight at once.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for one answer.")
@click.option("--retries", default=3, show_default=True, help="Retries per question, with exponential backoff.")
@click.option("--temperature", default=0.7, show_default=True, help="Sampling temperature of the source model.")
@click.option("--max-tokens", default=512, show_default=True, help="Longest answer; one cut off there is rejected.")
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the training conversations (JSONL).")
@click.option(
    "--cache", "cache_dir", type=click.Path(file_okay=False), help="Reply cache. Default: OUT's stem + .cache"
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (cached replies are still reused).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_distil(
    config,
    persona,
    questions,
    paraphrases,
    seed,
    list_questions,
    url,
    model,
    api_key_env,
    concurrency,
    timeout,
    retries,
    temperature,
    max_tokens,
    out,
    cache_dir,
    overwrite,
    as_json,
):
    """Ask the source model (any OpenAI-compatible endpoint) the persona's questions with the card's full
    inference prompt, and write its answers as training conversations (tagged "distilled").

    \b
    Answers the rubric's detectors flag (a forbidden claim, template tokens, tool-call text, the wrong
    language, another identity, cut off at --max-tokens) are kept out and listed in OUT's .report.json.
    Interrupted? Run the same command again: finished questions are kept in OUT.partial and replies in
    the cache, so nothing is asked twice. Exits 1 when some questions got no answer (re-run to retry).

    \b
    Example:
      export OPENAI_API_KEY=...   # or --api-key-env MY_VAR; a local llama.cpp server needs none
      molt data distil --config my-persona/molt.yaml --url https://api.openai.com/v1 --model gpt-4o \\
           --paraphrases 3 --out my-persona/distilled.jsonl
    """
    from molting.data.distil import distil, generate_questions, load_questions
    from molting.openai_client import Endpoint

    card = _card(config, persona, "molt data distil")
    asked = load_questions(questions) if questions else generate_questions(card, paraphrases, seed)
    if list_questions:
        for q in asked:
            click.echo(f"{q.id}\t{q.source}\t{q.question}")
        return
    missing = [name for name, value in (("--url", url), ("--model", model), ("--out", out)) if not value]
    if missing:
        raise UserError(f"molt data distil: {', '.join(missing)} required (or --list-questions to only list them).")
    try:
        endpoint = Endpoint(url, model, api_key_env=api_key_env, timeout_s=timeout, max_retries=retries)
    except ValueError as e:
        raise UserError(f"--url: {e}") from None
    from molting.progress import bar

    with bar(f"asking {model}", None, unit="questions", disable=as_json) as progress:
        summary = distil(
            card,
            asked,
            endpoint,
            out,
            concurrency=concurrency,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            cache_dir=cache_dir,
            overwrite=overwrite,
            on_progress=lambda done, total: progress.update(completed=done, total=total),
        )
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        tables.print_distil_summary(summary, model)
        console.print(f"wrote {summary['out']} and {summary['report']}")
    if summary["failed"]:
        err_console.print(
            f"{len(summary['failed'])} question(s) got no answer; run the same command again to retry them."
        )
        sys.exit(1)


@data.command("curate", short_help="Deduplicate, split off held-out data, check it.")
@click.argument("data_file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="molt.yaml: its data, persona and suite, and its base's tokenizer and max_length for the length histogram.",
)
@set_option
@click.option("--persona", type=click.Path(dir_okay=False), help="Persona card (without --config).")
@click.option("--suite", type=click.Path(dir_okay=False), help="Evaluation suite (without --config).")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    help="Where train.jsonl, held_out.jsonl, removed.jsonl and curate.json go. Default: DATA's folder/curated.",
)
@click.option("--held-out", default=0.1, show_default=True, help="Fraction of conversations held out.")
@click.option("--seed", default=0, show_default=True, help="Seed of the train/held-out split.")
@click.option(
    "--near-duplicate",
    default=0.95,
    show_default=True,
    help="Embedding cosine similarity at or above which two conversations count as one.",
)
@click.option("--no-embeddings", is_flag=True, help="Skip the embedding model: exact duplicates and text leaks only.")
@click.option(
    "--leak-threshold",
    default=0.92,
    show_default=True,
    help="Similarity at or above which a training question is a near-verbatim suite question.",
)
@click.option("--drop-leaks", is_flag=True, help="Remove training examples that leak a suite question.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier curate in --out-dir.")
@click.option("--json", "as_json", is_flag=True, help="Print curate.json instead of the summary.")
def data_curate(
    data_file,
    config,
    overrides,
    persona,
    suite,
    out_dir,
    held_out,
    seed,
    near_duplicate,
    no_embeddings,
    leak_threshold,
    drop_leaks,
    overwrite,
    as_json,
):
    """Deduplicate DATA (default: the config's data), split it into train and held-out by conversation,
    and report what it teaches: facts and suite areas no example covers, lengths against the token budget,
    and suite questions leaking into the training questions.

    \b
    Exits 1 when a suite question leaks into train.jsonl (use --drop-leaks to remove those examples).

    \b
    Example:
      molt data curate --config my-persona/molt.yaml my-persona/imported.jsonl --out-dir my-persona/curated
    """
    from molting.card.persona import load_persona
    from molting.card.suite import load_suite
    from molting.data.curate import CurateOptions, curate

    tokenizer = max_length = None
    if config:
        from molting.models.base_model import config_tokenizer

        quiet_libraries()
        cfg = load_config(config, overrides)
        persona, suite = persona or cfg.persona, suite or cfg.suite
        if not data_file and isinstance(cfg.data, list) and len(cfg.data) > 1:
            raise UserError(
                f"{config}: data lists {len(cfg.data)} files ({', '.join(cfg.data)}); molt data curate reads one: "
                f"give it as DATA, e.g. molt data curate {cfg.data[0]} --config {config}."
            )
        data_file = data_file or (cfg.data[0] if isinstance(cfg.data, list) else cfg.data)
        tokenizer, max_length = config_tokenizer(cfg)
    missing = [n for n, v in (("DATA", data_file), ("--persona", persona), ("--suite", suite)) if not v]
    if missing:
        raise UserError(f"molt data curate: give {', '.join(missing)}, or --config molt.yaml.")
    card = load_persona(persona)
    options = CurateOptions(
        held_out=held_out,
        seed=seed,
        near_duplicate=None if no_embeddings else near_duplicate,
        leak_threshold=leak_threshold,
        drop_leaks=drop_leaks,
    )
    out_dir = out_dir or Path(data_file).parent / "curated"
    with err_console.status(f"curating {data_file}" + ("" if no_embeddings else " (embedding every conversation)")):
        summary = curate(
            data_file, card, load_suite(suite, card), out_dir, options, tokenizer, max_length, overwrite=overwrite
        )
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        tables.print_curate_summary(summary, data_file)
    sys.exit(1 if summary["leaks"] and not summary["leaks_dropped"] else 0)
