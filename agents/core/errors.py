"""Errors of the agents layer that the command line reports in one line."""


class TrainingInterrupted(RuntimeError):
    """A Ray worker that cannot be replaced mid-update (a learner) failed; the message says how
    to resume."""


class GuardStop(RuntimeError):
    """The guard stopped the run (``guard.on_hacking: stop``); the message says why."""
