"""Exit codes and the exceptions that carry them to the command line."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_TRACKER_DOWN = 4
EXIT_LOCKED = 5


class MaintError(Exception):
    """An error the operator can act on: printed as one message, never a traceback."""

    exit_code = EXIT_FAILED


class ConfigError(MaintError):
    """The configuration, the command line or the deployment is wrong."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = problems
        super().__init__("\n".join(problems))


class SkippedError(MaintError):
    """Nothing was done on purpose (e.g. the tracker is not running)."""

    exit_code = EXIT_SKIPPED


class TrackerDownError(MaintError):
    """The tracker could not be started again after the window."""

    exit_code = EXIT_TRACKER_DOWN


class LockedError(MaintError):
    """Another run holds the lock."""

    exit_code = EXIT_LOCKED
    holder_pid: int | None = None


class DockerError(MaintError):
    """A docker CLI call failed."""


class Interrupted(MaintError):
    """A termination signal arrived; raised so that cleanup runs."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class VerificationFailed(MaintError):
    """A verdict on the data: the set does not restore to what its manifest records."""


class VerificationInconclusive(MaintError):
    """Verification could not run to a verdict (Docker, disk, a signal): says nothing of
    the data, so it never marks a set bad and never makes prune delete one."""


class DockerUnavailable(DockerError):
    """The Docker daemon did not answer (down, restarting, busy): a transient fault."""


class DatabaseNotReady(MaintError):
    """The database container is restarting, not yet healthy or not answering: transient."""
