"""A small Flask app with an app factory, SQLAlchemy sessions and taskflare. Its config
comes from FLASK_* variables (FLASK_SQLALCHEMY_URL, FLASK_TASKFLARE_DATABASE_URL) or
from the mapping given to `create_app`."""

from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from taskflare.integrations.flask import TaskFlare

taskflare = TaskFlare()
audit = taskflare.app.queue("audit", max_batch_timeout=0)


@taskflare.app.job("send-welcome")
def send_welcome(payload: dict[str, Any]) -> dict[str, Any]:
    return {"welcomed": payload["email"]}


@taskflare.app.job("tag-signup")
def tag_signup(payload: dict[str, Any]) -> None:
    pass


@audit.consumer
def record(batch: Any) -> None:
    pass


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    app.config.update(config or {})
    engine = create_engine(app.config["SQLALCHEMY_URL"])
    Session = sessionmaker(engine)
    app.extensions["engine"] = engine
    taskflare.init_app(app)

    @app.post("/signup")
    def signup() -> ResponseReturnValue:
        email = request.form["email"]
        with Session() as session:
            session.execute(text("INSERT INTO signups (email) VALUES (:email)"), {"email": email})
            job = taskflare.enqueue("send-welcome", {"email": email}, session=session)
            message = taskflare.send("audit", {"signup": email}, session=session)
            batch = taskflare.send_batch("audit", [{"body": {"n": 1}}], session=session)
            tags = taskflare.enqueue_many(
                "tag-signup", [{"email": email, "tag": t} for t in ("new", "web")], session=session
            )
            seen = {"job": job.id, "message": message, "batch": batch, "tags": tags}
            if request.form.get("rollback"):
                session.rollback()
                return jsonify(seen), 409
            session.commit()
        return jsonify(seen)

    @app.get("/signups")
    def signups() -> ResponseReturnValue:
        with Session() as session:
            rows = session.execute(text("SELECT email FROM signups ORDER BY email"))
            return jsonify([row.email for row in rows])

    return app
