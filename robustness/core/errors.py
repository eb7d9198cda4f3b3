"""User-facing errors.

Every error a user can cause (a bad config, model file, data file, flag) is raised as a
:class:`RobustnessError`. The CLI prints it as one paragraph and exits with code 2; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations


class RobustnessError(Exception):
    """Base class of errors caused by the user's input.

    ``field`` names the bad input (a flag, a config key path, a file) and ``fix`` says
    what to do about it; both end up in the one-paragraph message.
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.field = field
        self.fix = fix
        super().__init__(self.render())

    def __reduce__(self):  # keep field and fix across pickling (worker processes, distributed ranks)
        return (_rebuild, (type(self), self.message, self.field, self.fix))

    def render(self) -> str:
        head = f"{self.field}: {self.message}" if self.field else self.message
        if not head.rstrip().endswith((".", "?", "!")):
            head = head.rstrip() + "."
        return f"{head} {self.fix}" if self.fix else head


class ConfigError(RobustnessError):
    """A configuration file or value is invalid."""


class ModelError(RobustnessError):
    """A model spec cannot be loaded or the model misbehaves."""


class DataError(RobustnessError):
    """A data spec cannot be loaded or the data is invalid."""


class ThreatModelError(RobustnessError):
    """A norm, epsilon or bounds value is invalid."""


class AttackError(RobustnessError):
    """An attack name or attack parameter is invalid."""


class UsageError(RobustnessError):
    """Command-line arguments are inconsistent."""


class OutputError(RobustnessError):
    """An output folder or file cannot be written (not a folder, no permission, disk full)."""


class RunLockedError(OutputError):
    """Another audit holds the output folder's lock."""


class CheckpointError(RobustnessError):
    """A checkpoint file of an unfinished audit does not hold what the audit wrote."""


def _rebuild(cls: type[RobustnessError], message: str, field: str | None, fix: str | None) -> RobustnessError:
    return cls(message, field=field, fix=fix)
