"""The one base of every expected error: bad input or a run that cannot go on. The CLI and the `jobs/` entrypoints
print its message as one line and exit with `exit_code` (2: bad input, 1: a failure); anything else is a bug and
keeps its traceback."""


class SyncseError(Exception):
    """An expected error; its message says what failed, why, and what to do."""

    exit_code = 2


class SyncseRunError(SyncseError):
    """A run that failed (training diverged or crashed, a stage could not finish): exit code 1."""

    exit_code = 1
