"""The HTML page: submit a job, watch its state change as callbacks arrive."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from . import db
from .jobs import SubmitError, submit_narada, submit_noukai
from .webhooks import hooks, narada, noukai

bp = Blueprint("example", __name__)

SUBMIT = {"narada": (narada, submit_narada), "noukai": (noukai, submit_noukai)}


def callback_url(path: str) -> str:
    """Where the provider should post: ``EXAMPLE_PUBLIC_URL`` or this request's host."""
    base = current_app.config["EXAMPLE_PUBLIC_URL"] or request.host_url
    return base.rstrip("/") + path


@bp.get("/")
def index() -> str:
    return render_template(
        "index.html",
        jobs=db.jobs(),
        events=db.resource_events(),
        receivers=[r.receiver() for r in (hooks, narada, noukai)],
    )


@bp.post("/jobs")
def submit() -> Response:
    """Record the job first, then submit it: a fast callback always finds its row."""
    provider = request.form.get("provider", "")
    prompt = request.form.get("prompt", "").strip()
    if provider not in SUBMIT or not prompt:
        flash("Choose a provider and write a prompt.")
        return redirect(url_for(".index"), code=303)
    receiver, submit_job = SUBMIT[provider]
    job_id = db.add_job(provider, prompt)
    try:
        remote_id = submit_job(prompt, callback_url(receiver.receiver().settings.url))
    except SubmitError as exc:
        current_app.logger.warning("submitting job %s failed: %s", job_id, exc)
        db.fail_job(job_id, "the provider did not accept the job")
        flash(f"{provider} did not accept the job.")
    else:
        db.set_remote_id(job_id, remote_id, "running")
    return redirect(url_for(".index"), code=303)
