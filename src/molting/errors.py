"""The one exception type for user mistakes.

Anything a user can fix (a missing file, bad YAML, an unknown field, a malformed data line) raises
`UserError` with a message naming the file, line and field and saying what to do. The CLI prints it and
exits with code 2; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input. `problems` holds every problem found, one message each."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
