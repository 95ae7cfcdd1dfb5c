"""Links between MLflow's own run page and the DeepVID views of the run.

MLflow has no UI plugin API, so the way from a run's page to its explanations is the run's
description (MLflow renders it as Markdown at the top of the run page) and a tag: both carry the
address of the run in the DeepVID app (``mlflow server --app-name deepvid``), relative to the
server, so it works wherever the server runs. The app links back to MLflow's run page
(:func:`run_page`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

#: the run tag with the run's address in the DeepVID app.
APP_TAG = "deepvid.app"
#: MLflow's run description (Markdown, shown on the run page).
NOTE_TAG = "mlflow.note.content"


def app_link(experiment_id: str, run_id: str, view: str = "overview") -> str:
    """The run's DeepVID page on the MLflow server that serves the app (docs/ui.md, "Links")."""
    return "/deepvid/?" + urlencode({"experiment": experiment_id, "run": run_id, "view": view})


def run_page(experiment_id: str, run_id: str, prefix: str = "") -> str:
    """MLflow's own page of a run (its UI routes live in the address's fragment)."""
    return f"{prefix}/#/experiments/{experiment_id}/runs/{run_id}"


def description(experiment_id: str, run_id: str) -> str:
    link = app_link(experiment_id, run_id)
    return (f"**DeepVID explanations** of this run: [open them in the DeepVID app]({link}) "
            "(served by `mlflow server --app-name deepvid`), or the saved viewer "
            "`deepvid/viewer.html` under Artifacts. The metrics `deepvid/...` summarise them "
            "per step; the images `deepvid/...` show each instance at its first step, where its "
            "prediction changes and at its last.")


def link_run(client: Any, run: Any) -> None:
    """Tag ``run`` (an MLflow ``Run``) with its DeepVID address, and describe it with a link
    there unless it already has a description (the user's own is never replaced)."""
    info, tags = run.info, run.data.tags
    client.set_tag(info.run_id, APP_TAG, app_link(info.experiment_id, info.run_id))
    if not tags.get(NOTE_TAG):
        client.set_tag(info.run_id, NOTE_TAG, description(info.experiment_id, info.run_id))


__all__ = ["APP_TAG", "NOTE_TAG", "app_link", "description", "link_run", "run_page"]
