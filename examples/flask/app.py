"""Watch an RQ job live in the browser, or wait for it in one request.

Run Redis, an RQ worker and this app from this directory, then open
http://127.0.0.1:5000/ (the README's "Flask" section has the steps)::

    redis-server
    rq worker -w job_notifier.contrib.rq.NotifyingWorker
    flask --app app run                 # Flask 1.1: FLASK_APP=app flask run

``REDIS_URL`` (default redis://127.0.0.1:6379/0) selects the Redis server of
the queue. Job events travel over the same server unless
``JOB_NOTIFIER_URL`` names another; the worker reads that variable too.

The page opens the event stream before it starts the job, so it shows every
event of the job, ``enqueue`` included:

1. ``POST /jobs`` returns a new job id and the URLs below.
2. ``GET /jobs/<id>/events`` is the stream; ``EventSource`` opens it.
3. ``POST /jobs/<id>/start`` enqueues the job once the stream is open.

``GET /add?a=2&b=3&seconds=1`` enqueues the same job and responds with its
result when it finishes, or with 504 after ``timeout`` seconds.
"""

from __future__ import absolute_import, unicode_literals

import math
import os
import uuid

from flask import Flask, abort, jsonify, render_template, request, url_for
from redis import Redis
from rq.job import Job

import tasks
from job_notifier.contrib.flask import JobNotifier
from job_notifier.contrib.rq import NotifyingQueue, fetch_return_value

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Upper bounds of the request parameters, in seconds.
MAX_JOB_SECONDS = 60.0
MAX_WAIT_SECONDS = 120.0

job_notifier = JobNotifier()


def create_app(config=None):
    """Create the example app; ``config`` overrides the settings."""
    app = Flask(__name__)
    app.config["REDIS_URL"] = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    app.config.update(config or {})
    app.config.setdefault("JOB_NOTIFIER_URL",
                          os.environ.get("JOB_NOTIFIER_URL")
                          or app.config["REDIS_URL"])
    # A stream of a job that never starts ends after ten minutes.
    app.config.setdefault("JOB_NOTIFIER_STREAM_TIMEOUT", 600)
    job_notifier.init_app(app)

    # redis-py opens connections on first use and opens new ones in a
    # forked process, so this client is safe under gunicorn --preload.
    redis = Redis.from_url(app.config["REDIS_URL"])

    def job_queue():
        return NotifyingQueue(connection=redis, notifier=job_notifier.notifier)

    @app.route("/")
    def index():
        return render_template("index.html")

    @app.route("/jobs", methods=["POST"])
    def create_job():
        job_id = str(uuid.uuid4())
        response = jsonify(
            job_id=job_id,
            events_url=url_for("job_events", job_id=job_id),
            start_url=url_for("start_job", job_id=job_id))
        response.status_code = 201
        return response

    @app.route("/jobs/<job_id>/start", methods=["POST"])
    def start_job(job_id):
        job_id = valid_job_id(job_id)
        parameters = request.get_json(silent=True) or {}
        a = number(parameters, "a", 2)
        b = number(parameters, "b", 3)
        seconds = seconds_between(number(parameters, "seconds", 1.0),
                                  "seconds", MAX_JOB_SECONDS)
        fail = bool(parameters.get("fail", False))
        if Job.exists(job_id, connection=redis):
            abort(409, "Job %s was already started." % job_id)
        job_queue().enqueue(tasks.add, a, b, seconds=seconds, fail=fail,
                            job_id=job_id, job_timeout=MAX_JOB_SECONDS + 30)
        response = jsonify(job_id=job_id)
        response.status_code = 202
        return response

    @app.route("/jobs/<job_id>/events")
    def job_events(job_id):
        return job_notifier.job_event_stream(valid_job_id(job_id),
                                             connection=redis)

    @app.route("/add")
    def add():
        a = number(request.args, "a", 2)
        b = number(request.args, "b", 3)
        seconds = seconds_between(number(request.args, "seconds", 1.0),
                                  "seconds", MAX_JOB_SECONDS)
        timeout = request.args.get("timeout")
        if timeout is not None:
            timeout = seconds_between(number(request.args, "timeout", None),
                                      "timeout", MAX_WAIT_SECONDS)
        fail = request.args.get("fail") == "1"
        job = job_queue().enqueue(tasks.add, a, b, seconds=seconds, fail=fail,
                                  job_timeout=MAX_JOB_SECONDS + 30)

        # Responds with 504 when the timeout passes first.
        event = job_notifier.wait_for_job_or_504(job, timeout=timeout)
        if event == "failed":
            # The stored status carries no error text, so a job that failed
            # before the wait subscribed has only the worker's log.
            error = (event.extras.get("error")
                     or "the job failed; the worker's log has the traceback")
            response = jsonify(job_id=job.id, event=event, error=error)
            response.status_code = 500
            return response
        return jsonify(job_id=job.id, event=event,
                       result=fetch_return_value(job))

    @app.route("/health")
    def health():
        return jsonify(pid=os.getpid(), notifier=job_notifier.notifier.health())

    return app


def valid_job_id(job_id):
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        abort(404, "There is no job %s: job ids are UUIDs." % job_id)


def number(parameters, name, default):
    """Return a finite number from the request; 2.0 becomes 2."""
    value = parameters.get(name, default)
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        parsed = float("nan")
    if math.isnan(parsed) or math.isinf(parsed):
        abort(400, "Invalid %s %r: pass a number." % (name, value))
    return int(parsed) if parsed.is_integer() else parsed


def seconds_between(value, name, maximum):
    if not 0 <= value <= maximum:
        abort(400, "Invalid %s %s: pass a number of seconds from 0 to %s."
              % (name, value, maximum))
    return value
