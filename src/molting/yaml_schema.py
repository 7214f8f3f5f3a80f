"""JSON Schemas of molt.yaml, persona.yaml and suite.yaml, for an editor's completion and checking as you type.

Reached through `molt config schema` (`write_schemas`). Each schema is generated from the dataclasses that
`molting.yaml_source.build` reads the file into, so it cannot drift from what molting accepts: a field is a
property (required when it has no default), an unknown key is refused (additionalProperties false), a
Literal is an enum, and the description is the field's `metadata["help"]` (molt.yaml) or the comment written
beside and above the field (the persona card and the suite). What `__post_init__` checks (a positive
learning rate, unique ids, regexes that compile) stays with `molt check`; the schema knows the shapes.
"""

import ast
import dataclasses
import inspect
import io
import json
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal

from molting.io import write_text_atomic

DRAFT = "http://json-schema.org/draft-07/schema#"  # the draft editors' YAML language servers read
# PyYAML reads 2e-4 (no dot) as text, and molting takes such text as the number it spells (yaml_source)
NUMBER_TEXT = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"


def _schema_classes() -> dict[str, type]:
    from molting.card.persona import Persona
    from molting.card.suite import Suite
    from molting.config import RunConfig

    return {"molt": RunConfig, "persona": Persona, "suite": Suite}


SCHEMA_KINDS = ("molt", "persona", "suite")
TITLES = {
    "molt": "molt.yaml: the run config of molting",
    "persona": "persona.yaml: molting's persona card",
    "suite": "suite.yaml: molting's evaluation questions",
}


def _comment_descriptions(cls: type) -> dict[str, str]:
    """Field name → the comments written on its line and on the comment lines right above it."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    source = inspect.cleandoc("\n" + source) if source.startswith((" ", "\t")) else source
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(token.start[0])
    out = {}
    (node,) = ast.parse(source).body
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        above = []
        line = statement.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        last = statement.end_lineno or statement.lineno
        beside = [comments[n] for n in range(statement.lineno, last + 1) if n in comments]
        text = " ".join(c for c in above + beside if c)
        if text:
            out[statement.target.id] = text
    return out


def _json_default(value: Any) -> Any:
    """The default as it is written in YAML, or dataclasses.MISSING when it is a whole section."""
    if dataclasses.is_dataclass(value):
        return dataclasses.MISSING
    return value


def type_schema(tp: Any) -> dict:
    """The JSON Schema of one field type, as `molting.yaml_source.build` reads it."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(option) for option in typing.get_args(tp)]}
    if origin is Literal:
        values = list(typing.get_args(tp))
        return {"type": "string", "enum": values} if all(isinstance(v, str) for v in values) else {"enum": values}
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": type_schema(item)}
    if origin is dict:
        _, value = typing.get_args(tp)
        return {"type": "object", "additionalProperties": type_schema(value)}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    if tp is float:
        return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": NUMBER_TEXT}]}
    simple = {str: "string", int: "integer", bool: "boolean", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    raise TypeError(f"no JSON Schema for {tp!r}")  # a type yaml_source cannot build either


def dataclass_schema(cls: type) -> dict:
    """An object with one property per field of `cls` (a section left empty in YAML reads as its defaults)."""
    hints = typing.get_type_hints(cls)
    comments = _comment_descriptions(cls)
    properties, required = {}, []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        prop = type_schema(hints[f.name])
        description = f.metadata.get("help") or comments.get(f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = _json_default(f.default_factory())
        else:
            default = dataclasses.MISSING
            required.append(f.name)
        if dataclasses.is_dataclass(hints[f.name]) and default is dataclasses.MISSING and f.name not in required:
            prop["type"] = ["object", "null"]  # `train:` with nothing under it: every default
        if description:
            prop = {"description": description, **prop}
        if default is not dataclasses.MISSING:
            prop["default"] = default
        properties[f.name] = prop
    schema: dict[str, Any] = {"type": "object"}
    doc = inspect.getdoc(cls)
    if doc and not doc.startswith(cls.__name__ + "("):  # not the signature dataclasses writes
        schema["description"] = " ".join(doc.split())
    schema["properties"] = properties
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def json_schema(kind: str) -> dict:
    """The JSON Schema of one file kind: "molt", "persona" or "suite"."""
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"unknown schema kind {kind!r}; known: {', '.join(SCHEMA_KINDS)}")
    return {"$schema": DRAFT, "title": TITLES[kind], **dataclass_schema(_schema_classes()[kind])}


def write_schemas(out_dir: str | Path, kinds: tuple[str, ...] = SCHEMA_KINDS) -> list[Path]:
    """KIND.schema.json for each kind, in `out_dir`; the paths written."""
    written = []
    for kind in kinds:
        path = Path(out_dir) / f"{kind}.schema.json"
        write_text_atomic(path, json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written
