"""Check a stage's JSON result against the TypedDict that declares it: every required key present, no key
the type does not declare, and each value of the declared kind, recursively. A key renamed in the code
but not in the type (or the reverse) fails here, not in a user's terminal."""

import json
import types
import typing
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict


def shape_problems(value: Any, tp: Any, where: str = "result") -> list[str]:
    """What in `value` (as read back from JSON) does not match `tp`; [] when it matches."""
    if tp is Any:
        return []
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: expected an object ({tp.__name__}), got {type(value).__name__}"]
        hints = get_type_hints(tp)
        problems = [f"{where}: missing key {k!r} ({tp.__name__})" for k in sorted(tp.__required_keys__ - set(value))]
        problems += [f"{where}: key {k!r} is not declared in {tp.__name__}" for k in sorted(set(value) - set(hints))]
        for key, item in value.items():
            if key in hints:
                problems += shape_problems(item, hints[key], f"{where}.{key}")
        return problems
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [shape_problems(value, option, where) for option in get_args(tp)]
        return [] if any(not p for p in options) else min(options, key=len)
    if origin is typing.Literal:
        return [] if value in get_args(tp) else [f"{where}: {value!r} is not one of {get_args(tp)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        (item_type,) = get_args(tp)
        return [p for i, item in enumerate(value) for p in shape_problems(item, item_type, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        _, value_type = get_args(tp)
        return [p for k, item in value.items() for p in shape_problems(item, value_type, f"{where}.{k}")]
    if tp is type(None):
        return [] if value is None else [f"{where}: expected null, got {value!r}"]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    return [] if ok else [f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}"]


def assert_shape(value: Any, tp: Any) -> None:
    """`value` as it would be written to disk (a JSON round trip) matches `tp`."""
    problems = shape_problems(json.loads(json.dumps(value)), tp)
    assert not problems, "\n".join(problems)
