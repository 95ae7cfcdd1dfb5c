"""What happens when logging fails: training goes on (mlflow autologging's ``safe_function``).

A DeepVID callback runs inside someone's training loop; a full disk, a dead MLflow server or a
bug of ours must not cost them their run. So every step of the callback (explaining, each sink's
write/flush/close, saving the VAE) runs through :meth:`ErrorPolicy.call`:

- ``on_error='warn'`` (the default): the failure is counted per *kind* (``"mlflow.write"``,
  ``"explain"``, ...), the first failure of each kind is warned about (``DeepVIDWarning``) and
  logged with its traceback, later ones are logged at DEBUG level, and training continues.
  A sink that fails ``max_consecutive`` times in a row is switched off with one more warning,
  so a server that is gone for good does not cost its client's retry budget at every epoch.
  A sink that keeps what it is given on disk until its backend takes it (the MLflow sink: it
  has ``reachable()``) is *buffering*: switched off, it still takes writes (they cost only the
  local disk) and is closed at the end, and it is switched back on, with a warning, as soon as
  :meth:`ErrorPolicy.revive` finds its backend answering again (the callbacks ask once per
  explained epoch), so nothing written during an outage is lost.
- ``on_error='raise'``, or the environment variable ``DEEPVID_TESTING=1`` (set by the test
  suite, as mlflow does for its own): the exception propagates, so a broken sink fails the tests
  instead of printing a warning nobody reads.

Only ``Exception`` is caught: ``KeyboardInterrupt`` and ``SystemExit`` always propagate.
"""

from __future__ import annotations

import collections
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger("deepvid_plugin.callbacks")

ON_ERROR_CHOICES = ("warn", "raise")
TESTING_ENV = "DEEPVID_TESTING"

T = TypeVar("T")


class DeepVIDWarning(UserWarning):
    """A DeepVID callback step failed and was skipped; training continues."""


def check_on_error(on_error: Any) -> str:
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error: expected one of {', '.join(map(repr, ON_ERROR_CHOICES))}, "
                         f"got {on_error!r}")
    return on_error


class ErrorPolicy:
    """Runs callback steps under the ``on_error`` policy and counts failures per kind.

    Attributes:
        failures: kind -> number of failures so far (all of them, not only the warned one).
        disabled: the kinds' owners switched off after ``max_consecutive`` failures in a row.
    """

    def __init__(self, on_error: str = "warn", max_consecutive: int = 3):
        self.on_error = check_on_error(on_error)
        if isinstance(max_consecutive, bool) or not isinstance(max_consecutive, int) \
                or max_consecutive < 1:
            raise ValueError(f"max_consecutive: expected an int >= 1, got {max_consecutive!r}")
        self.max_consecutive = max_consecutive
        self.failures: collections.Counter[str] = collections.Counter()
        self.disabled: set[str] = set()
        self.buffering: set[str] = set()  # owners that hold what they are given (see above)
        self._streak: collections.Counter[str] = collections.Counter()

    @property
    def raising(self) -> bool:
        return self.on_error == "raise" or os.environ.get(TESTING_ENV, "") == "1"

    def call(self, kind: str, fn: Callable[..., T], *args: Any, owner: str | None = None,
             proves: bool = True, while_off: bool = False,
             **kwargs: Any) -> tuple[bool, T | None]:
        """``(True, fn(...))``, or ``(False, None)`` after a failure handled by the policy.

        ``owner`` (e.g. the sink's name) groups kinds for switching off: an owner that is
        disabled is not called at all, unless ``while_off`` (a buffering owner's writes and
        close). ``proves=False`` marks calls whose success says nothing about the owner's
        health (a buffered write), so they do not end a failure streak.
        """
        owner = owner or kind
        if owner in self.disabled and not (while_off and owner in self.buffering):
            return False, None
        try:
            value = fn(*args, **kwargs)
        except Exception as e:
            self.failures[kind] += 1
            self._streak[owner] += 1
            if self.raising:
                raise
            self._report(kind, owner, e)
            return False, None
        if proves:
            self._streak[owner] = 0
        return True, value

    def _report(self, kind: str, owner: str, error: Exception) -> None:
        what = f"{type(error).__name__}: {error}"
        if self.failures[kind] == 1:
            msg = (f"deepvid: {kind} failed ({what}); training continues without it. Later "
                   f"failures of this kind are counted (callback.failures) and logged at DEBUG "
                   f"level. Pass on_error='raise' to stop instead.")
            warnings.warn(msg, DeepVIDWarning, stacklevel=4)
            logger.warning(msg, exc_info=error)
        else:
            logger.debug("deepvid: %s failed again (%d times): %s", kind, self.failures[kind],
                         what)
        if self._streak[owner] >= self.max_consecutive and owner not in self.disabled:
            self.disabled.add(owner)
            if owner in self.buffering:
                msg = (f"deepvid: {owner} failed {self._streak[owner]} times in a row and is "
                       f"switched off until it answers again (checked every explained epoch); "
                       f"what is written meanwhile waits on disk and is sent then (last "
                       f"error: {what})")
            else:
                msg = (f"deepvid: {owner} failed {self._streak[owner]} times in a row and is "
                       f"switched off for the rest of this run (last error: {what})")
            warnings.warn(msg, DeepVIDWarning, stacklevel=4)
            logger.warning(msg)

    def revive(self, owner: str, answers: Callable[[], bool]) -> bool:
        """Switch a buffering ``owner`` back on when ``answers()`` says its backend is back
        (with a warning, so the user knows); True when the owner is on."""
        if owner not in self.disabled:
            return True
        if owner not in self.buffering:
            return False
        try:
            back = bool(answers())
        except Exception as e:  # the probe itself failed: still away; say so at DEBUG level
            logger.debug("deepvid: %s is still away: %r", owner, e)
            return False
        if back:
            self.disabled.discard(owner)
            self._streak[owner] = 0
            msg = (f"deepvid: {owner} answers again and is switched back on; what it held is "
                   f"sent now")
            warnings.warn(msg, DeepVIDWarning, stacklevel=3)
            logger.warning(msg)
        return back

    def summary(self) -> str:
        if not self.failures:
            return "no failures"
        return ", ".join(f"{k}: {n}" for k, n in sorted(self.failures.items()))
