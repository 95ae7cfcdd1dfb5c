"""What the DeepVID tab keeps between requests, so a page load and its follow-ups cost little.

- :class:`OverviewCache`: recently read run overviews and the plugin's encoded answers, each
  valid while the run's summary series are unchanged (their *fingerprint*);
- :class:`RecordCache`: recently decoded records, keyed by the blobs they were read from, so
  compare's "Map of" switch, or a detail panel opened twice, reads nothing again.

Both are keyed by content (a fingerprint, a blob key), never by a name alone, so new or
re-written data is never hidden by them.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

__all__ = ["OverviewCache", "RecordCache"]


class OverviewCache:
    """Recently read run overviews, each valid while the run's summary series are unchanged.

    An overview decodes one JSON summary per instance-step (12,800 for 64 instances x 200 steps)
    and a page load asks for it twice (``runs`` counts, ``instances`` draws), as does every
    ``compare``. An entry is keyed by ``(experiment, run, kind)`` and stamped with the run's
    *fingerprint*: every summary tag with its last step and wall time, as the data provider lists
    them. New or re-written data changes the fingerprint, so a stale entry is never served. The
    entry also keeps the gzipped ``instances`` and ``timeline`` answers, so serving them again
    costs no encoding.
    Entries are only ever read, never mutated, by the API.
    """

    def __init__(self, max_runs: int = 8):
        if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
            raise ValueError(f"max_runs: expected a positive int, got {max_runs!r}")
        self._max = max_runs
        self._entries: collections.OrderedDict[tuple, dict[str, Any]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, fingerprint: tuple, what: str) -> Any:
        """The cached ``what`` ("overview" or an encoded answer's name), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry["fingerprint"] != fingerprint:
                return None
            self._entries.move_to_end(key)
            return entry.get(what)

    def put(self, key: tuple, fingerprint: tuple, what: str, value: Any) -> None:
        # ``value`` was read after ``fingerprint`` was listed, so it is at least that fresh.
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry["fingerprint"] != fingerprint:
                entry = self._entries[key] = {"fingerprint": fingerprint}
            entry[what] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class RecordCache:
    """Decoded records (their typed views), least recently used first out.

    Keyed by where a record was read from: run, kind, subject, step and the blob keys of the
    record and of its once-per-subject arrays. A re-written step is a new blob with a new key,
    so it is read afresh. Records are frozen, so one may be handed to several requests.
    """

    def __init__(self, max_records: int = 512):
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ValueError(f"max_records: expected a positive int, got {max_records!r}")
        self._max = max_records
        self._entries: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: tuple, record: Any) -> None:
        with self._lock:
            self._entries[key] = record
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
