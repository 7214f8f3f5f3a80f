"""A small evaluator for the subset of Go's text/template that molting writes into Ollama Modelfiles.

Ollama renders a Modelfile's TEMPLATE with Go's text/template. Go is not available where molting runs, so
to check that the TEMPLATE molting writes renders a conversation exactly as the training chat template
does, `render` evaluates the constructs `ollama_modelfile.go_template` emits, and nothing else:
literal text, `{{ range $i, $m := .Messages }}`, `{{ if … }}` / `{{ else if … }}` / `{{ else }}` /
`{{ end }}`, printing `{{ $m.Content }}`, declaring `{{ $prev := "" }}` and assigning
`{{ $prev = $m.Role }}` (an assignment inside a range changes the variable declared outside it, as in Go
since 1.11), and the builtins `eq`, `ne`, `and`, `not`, `len`, `slice` over `$.Messages`, variables,
fields and string literals. Anything else raises `ValueError`, so the
check cannot pass on a construct it does not understand. It checks molting's reading of Go's
semantics (the idioms are the ones Ollama's own templates use), not Ollama's binary.
"""

import re

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_SET = re.compile(r"(\$\w+)\s*(:=|=)\s*(.+)", re.S)


class _Variable:
    """A variable declared with :=; scopes hold the same object, so `=` anywhere changes it for all."""

    def __init__(self, value):
        self.value = value


_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+)')


def _tokens(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read template expression {expr!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _parse(template: str) -> list:
    """Template → nested nodes: ("text", s), ("print", expr), ("if", [(cond|None, body)...]),
    ("range", index_var, item_var, expr, body)."""
    parts, pos = [], 0
    for m in _ACTION.finditer(template):
        if m.start() > pos:
            parts.append(("text", template[pos : m.start()]))
        action = m.group(1)
        if action.startswith("-") or action.endswith("-"):
            raise ValueError("whitespace-trimming actions ({{- / -}}) are not in the supported subset")
        parts.append(("action", action.strip()))
        pos = m.end()
    if pos < len(template):
        parts.append(("text", template[pos:]))

    def block(i: int, stop: tuple[str, ...]) -> tuple[list, int, str | None]:
        nodes = []
        while i < len(parts):
            kind, value = parts[i]
            if kind == "text":
                nodes.append(("text", value))
                i += 1
                continue
            head = value.split(None, 1)[0] if value else ""
            if head in ("end", "else") and head in stop or value.startswith("else if") and "else" in stop:
                return nodes, i, value
            if head == "if":
                branches, cond = [], value[2:].strip()
                while True:
                    body, i, closing = block(i + 1, ("end", "else"))
                    branches.append((cond, body))
                    if closing is None:
                        raise ValueError("{{ if }} without {{ end }}")
                    if closing == "end":
                        break
                    cond = closing[len("else if") :].strip() if closing.startswith("else if") else None
                nodes.append(("if", branches))
                i += 1
            elif head == "range":
                m = re.fullmatch(r"range\s+(\$\w+)\s*,\s*(\$\w+)\s*:=\s*(.+)", value, re.S)
                if not m:
                    raise ValueError(f"unsupported range form {value!r}")
                body, i, closing = block(i + 1, ("end",))
                if closing != "end":
                    raise ValueError("{{ range }} without {{ end }}")
                nodes.append(("range", m.group(1), m.group(2), m.group(3), body))
                i += 1
            elif head in ("end", "else"):
                raise ValueError(f"unexpected {{{{ {value} }}}}")
            elif m := _SET.fullmatch(value):
                nodes.append(("declare" if m.group(2) == ":=" else "assign", m.group(1), m.group(3)))
                i += 1
            else:
                nodes.append(("print", value))
                i += 1
        return nodes, i, None

    nodes, _, closing = block(0, ())
    if closing is not None:
        raise ValueError(f"unexpected {{{{ {closing} }}}}")
    return nodes


def _value(token: str, scope: dict, root: dict):
    if token.startswith('"'):
        return token[1:-1].encode().decode("unicode_escape")
    if token.startswith("$."):
        obj, path = root, token[2:]
    elif token.startswith("$"):
        name, _, path = token.partition(".")
        if name not in scope:
            raise ValueError(f"undefined variable {name}")
        obj = scope[name]
        if isinstance(obj, _Variable):
            obj = obj.value
    elif token.startswith("."):
        obj, path = scope["."], token[1:]
    elif token.isdigit():
        return int(token)
    else:
        raise ValueError(f"unsupported operand {token!r}")
    for field in filter(None, path.split(".")):
        if not isinstance(obj, dict) or field not in obj:
            raise ValueError(f"no field {field!r} in {token}")
        obj = obj[field]
    return obj


def _eval(tokens: list[str], scope: dict, root: dict):
    """Evaluate a pipeline of one command: an operand, or a builtin applied to operands."""

    def operand(i: int):
        if tokens[i] == "(":
            depth, j = 0, i
            while True:
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                if depth == 0:
                    break
                j += 1
            return _eval(tokens[i + 1 : j], scope, root), j + 1
        return _value(tokens[i], scope, root), i + 1

    if not tokens:
        raise ValueError("empty expression")
    name = tokens[0]
    builtins = {"eq", "ne", "and", "not", "len", "slice"}
    if name not in builtins:
        if len(tokens) != 1 and tokens[0] != "(":
            raise ValueError(f"unsupported function {name!r}")
        value, end = operand(0)
        if end != len(tokens):
            raise ValueError(f"unsupported expression {' '.join(tokens)!r}")
        return value
    args, i = [], 1
    while i < len(tokens):
        value, i = operand(i)
        args.append(value)
    if name == "eq":
        return args[0] == args[1]
    if name == "ne":
        return args[0] != args[1]
    if name == "and":
        return next((a for a in args if not a), args[-1])
    if name == "not":
        return not args[0]
    if name == "len":
        return len(args[0])
    return args[0][args[1] : args[2] if len(args) > 2 else None]  # slice


def _run(nodes: list, scope: dict, root: dict, out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "print":
            value = _eval(_tokens(node[1]), scope, root)
            if not isinstance(value, str):
                raise ValueError(f"printing a non-string value from {node[1]!r}")
            out.append(value)
        elif kind == "declare":
            scope[node[1]] = _Variable(_eval(_tokens(node[2]), scope, root))
        elif kind == "assign":
            variable = scope.get(node[1])
            if not isinstance(variable, _Variable):
                raise ValueError(f"assignment to undeclared variable {node[1]}")
            variable.value = _eval(_tokens(node[2]), scope, root)
        elif kind == "if":
            for cond, body in node[1]:
                if cond is None or _eval(_tokens(cond), scope, root):
                    _run(body, scope, root, out)
                    break
        else:
            _, index_var, item_var, expr, body = node
            for i, item in enumerate(_eval(_tokens(expr), scope, root)):
                _run(body, {**scope, index_var: i, item_var: item, ".": item}, root, out)


def render(template: str, data: dict) -> str:
    """Render `template` with `data` (e.g. {"Messages": [{"Role": "user", "Content": "..."}]})."""
    out: list[str] = []
    _run(_parse(template), {".": data}, data, out)
    return "".join(out)
