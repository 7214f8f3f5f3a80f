"""Read YAML files (persona card, suite, run config) into typed dataclasses.

Every error names the file, the line and the dotted field, and says what was expected, so a user can
fix the file without reading our code. All problems in a file are reported at once, not just the first.
Dataclasses declare the schema: their fields (with type hints) are the allowed keys; fields without a
default are required; `__post_init__` raises ValueError for values that are the right type but wrong.
"""

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from molting.errors import UserError


@dataclass
class YamlDoc:
    """A parsed YAML file and the line of every key and list item in it."""

    path: Path
    data: Any
    lines: dict[tuple, int]

    def where(self, path: tuple = ()) -> str:
        """`file:line` for the closest known prefix of `path` (a tuple of keys and list indices)."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return f"{self.path}:{self.lines[path[:n]]}"
        return str(self.path)


def dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# Values that aliases (*name) may repeat in one file. A `<<: *defaults` under each of a few hundred questions
# stays far below; a "billion laughs" (an alias of nine aliases of nine aliases …) would be 10^9 values, and
# every reader that walks them (line numbers, the schema, the placeholder check) would run out of memory.
MAX_ALIAS_VALUES = 10_000


class _AliasRefused(yaml.composer.ComposerError):
    """An alias refused by _BoundedLoader: the file's syntax is fine, what it expands to is not."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, counting what each alias repeats as it composes: past MAX_ALIAS_VALUES, or at an
    alias inside the node it names (a structure that contains itself), it stops with the alias's line."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.alias_values = 0
        self.sizes: dict[int, int] = {}  # id(node) -> values in it, aliases expanded
        self.open_anchors: set[str] = set()

    def compose_node(self, parent, index):
        event = self.peek_event()
        anchor = event.anchor
        if isinstance(event, yaml.AliasEvent):
            if anchor in self.open_anchors:
                raise _AliasRefused(
                    None,
                    None,
                    f"alias *{anchor} is inside the node &{anchor} it names, which would contain itself; write the "
                    "values out",
                    event.start_mark,
                )
            if anchor in self.anchors:
                self.alias_values += _values_in(self.anchors[anchor], self.sizes)
                if self.alias_values > MAX_ALIAS_VALUES:
                    raise _AliasRefused(
                        None,
                        None,
                        f"with alias *{anchor} the aliases repeat over {MAX_ALIAS_VALUES:,} values (aliases of "
                        "aliases multiply); write the values out, or alias less",
                        event.start_mark,
                    )
            return super().compose_node(parent, index)
        if anchor is None:
            return super().compose_node(parent, index)
        self.open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.discard(anchor)


def _values_in(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` holds with every alias in it expanded, counted once per node (memo `sizes`)
    without recursion, so the count of a billion laughs costs as little as its text."""
    stack = [node]
    while stack:
        top = stack[-1]
        if id(top) in sizes:
            stack.pop()
            continue
        if isinstance(top, yaml.MappingNode):
            children = [n for pair in top.value for n in pair]
        elif isinstance(top, yaml.SequenceNode):
            children = list(top.value)
        else:
            children = []
        pending = [c for c in children if id(c) not in sizes]
        if pending:
            stack.extend(pending)
            continue
        sizes[id(top)] = 1 + sum(sizes[id(c)] for c in children)
        stack.pop()
    return sizes[id(node)]


def load_yaml(path: str | Path) -> YamlDoc:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found. Check the path (relative paths are taken from the config file).")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8.") from None
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        if isinstance(e, _AliasRefused):
            raise UserError(f"{path}{line}: {problem}.") from None
        raise UserError(f"{path}{line}: invalid YAML: {problem}. Fix the syntax at that line.") from None
    except RecursionError:
        raise UserError(
            f"{path}:{loader.line + 1}: invalid YAML: lists or mappings nested too deep (hundreds of levels)."
        ) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    problems: list[str] = []
    if root is not None:
        _record_lines(root, (), lines, problems)
    if problems:
        raise UserError([f"{path}:{d}" for d in problems])
    return YamlDoc(path=path, data=data, lines=lines)


def parse_yaml_value(raw: str, source: str) -> Any:
    """A value given on the command line (`--set train.epochs=2`), parsed as YAML like the file's own values,
    with the file's limits; a value that is not YAML is a UserError naming `source`."""
    loader = _BoundedLoader(raw)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e)
        if isinstance(e, _AliasRefused):
            raise UserError(f"{source}: {problem}.") from None
        raise UserError(
            f"{source}: the value is not YAML ({problem}); quote text that holds [ ] {{ }} : or #."
        ) from None
    except RecursionError:
        raise UserError(f"{source}: the value nests lists or mappings too deep.") from None
    finally:
        loader.dispose()


def _record_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int], problems: list[str]) -> None:
    """The line of every key and item. A key given twice in one mapping is a problem (PyYAML keeps the later
    one silently: a second `train:` block would drop every field of the first), and so is a lone surrogate
    escape ("\\ud800" in double quotes), which is no character and fails when the text is written out."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode) and (lone := _SURROGATE.search(node.value)):
        problems.append(
            f"{node.start_mark.line + 1}: {dotted(path)}: a lone surrogate escape (\\u{ord(lone.group()):04x}) "
            "is no character; write the character itself."
        )
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in seen and key.tag != "tag:yaml.org,2002:merge":
                problems.append(
                    f"{line}: {dotted(path + (key.value,))}: given twice (first at line {seen[key.value]}); the "
                    "second would silently replace the first. Keep one, with every field in it."
                )
            seen.setdefault(key.value, line)
            child = path + (key.value,)
            lines[child] = line
            _record_lines(value, child, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, path + (i,), lines, problems)


_SURROGATE = re.compile("[\\ud800-\\udfff]")


def build(cls: type, doc: YamlDoc, value: Any = dataclasses.MISSING, path: tuple = ()) -> Any:
    """Build `cls` from the document (or from `value` found at `path` in it); raise UserError listing
    every problem."""
    problems: list[str] = []
    result = _build(cls, doc.data if value is dataclasses.MISSING else value, doc, path, problems)
    if problems:
        raise UserError(problems)
    return result


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list,):
        return "a list"
    if origin in (dict,):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _build(tp: Any, value: Any, doc: YamlDoc, path: tuple, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        non_none = [o for o in options if o is not type(None)]
        if len(non_none) == 1:
            return _build(non_none[0], value, doc, path, problems)
        for option in non_none:  # e.g. str | list[str]: take the first that fits without problems
            trial: list[str] = []
            out = _build(option, value, doc, path, trial)
            if not trial:
                return out
        names = " or ".join(_type_name(o) for o in non_none)
        problems.append(f"{doc.where(path)}: {dotted(path)}: expected {names}, got {value!r}.")
        return None
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            problems.append(f"{doc.where(path)}: {dotted(path)}: expected {_type_name(tp)}, got {value!r}.")
        return value
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{doc.where(path)}: {dotted(path)}: expected a list, got {value!r}.")
            return []
        (item_tp,) = typing.get_args(tp)
        return [_build(item_tp, v, doc, path + (i,), problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{doc.where(path)}: {dotted(path)}: expected a mapping, got {value!r}.")
            return {}
        _, value_tp = typing.get_args(tp)
        return {str(k): _build(value_tp, v, doc, path + (k,), problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, doc, path, problems)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML reads "2e-4" (no dot) as text; users write learning rates that way.
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is Any:
        return value
    if tp is float and isinstance(value, float) and not math.isfinite(value):  # .nan, .inf, "nan", "1e999"
        problems.append(f"{doc.where(path)}: {dotted(path)}: expected a finite number, got {value!r}.")
        return value
    if tp in (str, int, float, bool):
        if isinstance(value, bool) and tp is not bool or not isinstance(value, tp):
            problems.append(f"{doc.where(path)}: {dotted(path)}: expected {_type_name(tp)}, got {value!r}.")
        return value
    raise TypeError(f"yaml_source cannot build {tp!r}")  # a bug in a schema, not a user error


def _build_dataclass(cls: type, value: Any, doc: YamlDoc, path: tuple, problems: list[str]) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.append(f"{doc.where(path)}: {dotted(path)}: expected a mapping of fields, got {value!r}.")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    before = len(problems)
    for key in value:
        if key not in fields:
            allowed = ", ".join(fields)
            problems.append(
                f"{doc.where(path + (key,))}: {dotted(path + (key,))}: unknown field. Allowed here: {allowed}."
            )
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _build(hints[name], value[name], doc, path + (name,), problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{doc.where(path)}: {dotted(path + (name,))}: required field is missing.")
    if len(problems) > before:
        return None
    try:
        return cls(**kwargs)
    except ValueError as e:
        field = getattr(e, "field", None)
        at = path + (field,) if field else path
        problems.append(f"{doc.where(at)}: {dotted(at)}: {e}")
        return None


class FieldValueError(ValueError):
    """Raised from `__post_init__` to point the error at one field's line."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


PLACEHOLDER = "TODO"  # `molt init` writes this marker into every value the user must fill in
# A value is a placeholder when it *starts* with the marker ("TODO: the answer", "TODO_regex"): real text
# that merely mentions a TODO (code, a to-do list) is the user's own and must pass.
_PLACEHOLDER_VALUE = re.compile(r"\s*TODO(?:[:_]|\s*$)")


def is_placeholder(text: str) -> bool:
    """True for a value `molt init` wrote and the user has not replaced yet."""
    return bool(_PLACEHOLDER_VALUE.match(text))


def placeholder_problems(doc: YamlDoc) -> list[str]:
    """Every value still holding `molt init`'s TODO marker, with its line."""
    problems: list[str] = []

    def walk(value: Any, path: tuple) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, path + (i,))
        elif isinstance(value, str) and is_placeholder(value):
            problems.append(
                f"{doc.where(path)}: {dotted(path)}: placeholder not filled in ({value.strip()[:60]!r}). "
                "Replace it with your persona's own text."
            )

    walk(doc.data, ())
    return problems
