"""Is an MLflow tracking server answering? A probe that costs at most a couple of seconds.

MLflow's own client retries a failed request with exponential back-off (its defaults: 7 retries,
a 120 s timeout each), so one call against a dead server blocks for minutes: 246 s per epoch
was measured before this probe existed. Those settings are process-wide environment variables
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``_TIMEOUT``) that the user's own MLflow calls share, so
instead of changing them we ask the server first, with a short timeout of our own, and only
call MLflow's client when it answers.

Any HTTP answer counts as "answering" (a proxy's 404 for ``/health``, an auth wall's 401): the
probe asks whether requests get through, not whether this endpoint exists. Tracking URIs that
are not ``http(s)`` (a local file store, sqlite, databricks) are not probed.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

#: seconds the probe waits for a connection and an answer.
PROBE_TIMEOUT_S = 2.0


def probe(tracking_uri: str | None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` when the server at ``tracking_uri`` answers (or is not an HTTP server), else
    why not (``"connection refused"``, ``"timed out after 2.0 s"``, ...)."""
    uri = str(tracking_uri or "")
    if urllib.parse.urlparse(uri).scheme not in ("http", "https"):
        return None
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - http(s) only
            answer.read(64)
    except urllib.error.HTTPError:
        return None  # an HTTP status: the server (or a proxy in front of it) is there
    except urllib.error.URLError as e:
        return _reason(e.reason, timeout)
    except (OSError, ValueError) as e:  # timeouts, resets, a malformed host
        return _reason(e, timeout)
    return None


def _reason(error: object, timeout: float) -> str:
    if isinstance(error, TimeoutError) or "timed out" in str(error):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)


def tracking_uri_of(client: object) -> str | None:
    """The tracking URI an ``MlflowClient`` talks to (``None`` when it does not say)."""
    uri = getattr(client, "tracking_uri", None)
    return str(uri) if uri else None


__all__ = ["PROBE_TIMEOUT_S", "probe", "tracking_uri_of"]
