"""The one DeepVID frontend as HTML pages, for the backends that are not TensorBoard.

The frontend (``frontend/``) is built into ``deepvid_plugin/static/`` as two files,
``deepvid.js`` (the global ``DeepVID``) and ``deepvid.css``. TensorBoard loads them through
``static/index.js``; the pages here wrap the same two files:

- :func:`standalone_html`: everything inline (bundle, styles, data). MLflow shows ``.html``
  artifacts in ``<iframe sandbox="allow-scripts">`` from a ``blob:`` URL, where relative URLs and
  network calls do not work, so the page answers every request from an inline snapshot
  (:func:`deepvid_plugin.api.snapshot`).
- :func:`served_html`: the page the MLflow app serves at ``/deepvid/``; it links the static files
  and talks to the live JSON API.

Neither page runs inline code besides the snapshot assignment: the bundle mounts every element
marked ``data-deepvid-mount`` by itself.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

_STATIC_PACKAGE = "deepvid_plugin"
_VIEWS = ("overview", "compare")


@functools.lru_cache(maxsize=1)
def bundle() -> tuple[str, str]:
    """``(js, css)`` of the built frontend, read from package data.

    Raises:
        FileNotFoundError: the package was installed without its built frontend (run
            ``make frontend``).
    """
    static = resources.files(_STATIC_PACKAGE).joinpath("static")
    try:
        js = static.joinpath("deepvid.js").read_text(encoding="utf-8")
        css = static.joinpath("deepvid.css").read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"the built DeepVID frontend is missing from {_STATIC_PACKAGE}/static ({e.filename}); "
            "run `make frontend` to build it"
        ) from e
    return js, css


def _script_safe(text: str) -> str:
    """Make JavaScript safe to paste between ``<script>`` tags.

    Only the sequences that end a script element early or switch the HTML parser into its
    "escaped" states matter; inside JS strings and regexes ``<\\/`` means the same as ``</``.
    """
    return (text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
            .replace("<!--", "<\\!--"))


def _json_for_script(data: Any) -> str:
    """JSON that is also a safe JS expression inside ``<script>``: no ``<``, ``>`` or ``&`` at all
    (names may contain ``</script>``), and no raw U+2028/U+2029 line separators."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _check_title(title: Any) -> str:
    if not isinstance(title, str):
        raise TypeError(f"title: expected a str, got {type(title).__name__}")
    return title


def _check_view(view: Any) -> str:
    if view not in _VIEWS:
        raise ValueError(f"view: expected one of {list(_VIEWS)}, got {view!r}")
    return view


def _page(title: str, head: str, mount_attrs: Mapping[str, str], body: str = "") -> str:
    attrs = "".join(f' data-{k}="{html.escape(v, quote=True)}"' for k, v in mount_attrs.items())
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body style=\"margin:0\">\n"
        f"<div id=\"deepvid\" data-deepvid-mount{attrs}></div>\n{body}</body>\n</html>\n"
    )


def standalone_html(snapshot: Mapping[str, Any], title: str = "DeepVID",
                    view: str = "overview") -> str:
    """A self-contained viewer page: bundle, styles and data inline, no network, no URLs.

    Args:
        snapshot: ``{snapshot_key: response}`` as built by :func:`deepvid_plugin.api.snapshot`
            (keys ``route + "?" + urlencode(sorted(params))``, see ``http_api.md``).
        title: the page title, also shown in the viewer's toolbar (escaped, any string is safe).
        view: the view to open first: ``"overview"`` (timeline) or ``"compare"``.
    """
    if not isinstance(snapshot, Mapping):
        raise TypeError(f"snapshot: expected a mapping of responses, got {type(snapshot).__name__}")
    if "runs" not in snapshot:
        raise ValueError(f"snapshot: expected a 'runs' response among its keys, got {sorted(snapshot)[:5]}")
    title = _check_title(title)
    view = _check_view(view)
    js, css = bundle()
    css = css.replace("</style", "<\\/style")
    head = f"<style>\n{css}\n</style>\n"
    body = (
        f"<script>window.__DEEPVID_SNAPSHOT__={_json_for_script(dict(snapshot))};</script>\n"
        f"<script>\n{_script_safe(js)}\n</script>\n"
    )
    return _page(title, head, {"title": title, "view": view}, body)


def served_html(api_base: str, static_base: str, title: str = "DeepVID",
                view: str = "overview") -> str:
    """The page of a live backend (the MLflow app's ``/deepvid/``).

    Args:
        api_base: URL (absolute or relative to the page) the JSON API answers under, e.g.
            ``"/deepvid/api/"``; routes are appended to it, so it must end with ``/``.
        static_base: URL the built ``deepvid.js`` and ``deepvid.css`` are served under, ending
            with ``/``.
        title: shown in the toolbar and the page title (escaped).
        view: ``"overview"`` or ``"compare"``.
    """
    for name, value in (("api_base", api_base), ("static_base", static_base)):
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a str URL ending with '/', got {type(value).__name__}")
        if not value.endswith("/"):
            raise ValueError(f"{name}: expected a URL ending with '/', got {value!r}")
    title = _check_title(title)
    view = _check_view(view)
    css = html.escape(static_base + "deepvid.css", quote=True)
    js = html.escape(static_base + "deepvid.js", quote=True)
    head = f"<link rel=\"stylesheet\" href=\"{css}\">\n"
    body = f"<script src=\"{js}\"></script>\n"
    return _page(title, head, {"api-base": api_base, "title": title, "view": view}, body)


__all__ = ["bundle", "served_html", "standalone_html"]
