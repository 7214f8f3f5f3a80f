"""`molt config schema`: the JSON Schemas of molt.yaml, persona.yaml and suite.yaml, for editors."""

import click

from molting.cli.options import console


@click.group(short_help="JSON Schemas of the project files, for editor completion.")
def config():
    """The project's YAML files as editors see them.

    \b
      molt config schema [--out DIR]   molt.schema.json, persona.schema.json, suite.schema.json
    """


@config.command("schema", short_help="Write JSON Schemas of molt.yaml, persona.yaml, suite.yaml.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Folder to write KIND.schema.json into (created if missing).",
)
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(["molt", "persona", "suite"]),
    multiple=True,
    help="Only this file's schema (repeatable). Default: all three.",
)
def schema(out, kinds):
    """Write a JSON Schema of molt.yaml, persona.yaml and suite.yaml into --out, for editor completion.

    The schemas are generated from the dataclasses molting reads each file into: every field with its
    type, default and description, enums for fixed choices, and unknown keys refused. With the YAML
    extension of VS Code (or any editor speaking the YAML language server), put a first line such as

    \b
      # yaml-language-server: $schema=./schemas/molt.schema.json

    in the file, or map files to schemas in the editor's settings (yaml.schemas); docs/configuration.md
    shows both.
    """
    from molting.yaml_schema import SCHEMA_KINDS, write_schemas

    for path in write_schemas(out, tuple(kinds) or SCHEMA_KINDS):
        console.print(f"wrote {path}", highlight=False)
