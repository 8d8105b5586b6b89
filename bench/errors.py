"""The one exception type for user mistakes: the CLI prints it as `error: …` and exits 2."""


class BenchError(Exception):
    """A problem the user can fix. The message says what was wrong and what to do."""
