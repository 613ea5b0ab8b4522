"""Exit statuses and the errors that carry one to the command line.

Owns the `ExitStatus` codes every command returns and `UserError`, the one-line failure a command
raises for bad input (a flag, a file, an engine that is down). Nothing below `cli` calls `sys.exit`.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # invalid manifests, an engine down, a failed action, bad usage
    CHANGES = 2  # `plan --detailed-exitcode`: the plan has changes
    UNPLACED = 3  # `apply`: everything that could be placed was, but some tasks fit nowhere
    DEPLOYMENT_FAILED = 4  # `apply`: a deployment FAILED (circuit breaker or alarm), rolled back or not


class UserError(Exception):
    """A clear, one-line error for the user; `status` is the exit status."""

    def __init__(self, message: str, status: ExitStatus = ExitStatus.ERROR):
        super().__init__(message)
        self.message = message
        self.status = status
