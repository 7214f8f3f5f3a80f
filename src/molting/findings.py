"""What a check found: one `Finding` type for the preflight (`molt check`, preflight.json) and the
doctor (`molt doctor`).

A finding has a level, the check that made it and a message that names the file, line or setting
concerned; the doctor adds the fix. `as_dict` is the JSON both write.
"""

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass
class Finding:
    level: Literal["ok", "info", "warning", "error"]  # an "error" makes the preflight fail
    check: str  # which check: token_budget, template, steps, memory, remote_code, cuda, ...
    message: str  # what was found, with the numbers and the file:line it concerns
    fix: str | None = None  # what to do about it (the doctor's findings carry one)

    def as_dict(self) -> dict:
        """The finding as JSON: `fix` only when the check gives one."""
        out = asdict(self)
        if self.fix is None:
            del out["fix"]
        return out
