"""The taskflare dashboard inside your own FastAPI app, under /admin/jobs.

Run:  TASKFLARE_API_TOKEN=s3cret uvicorn examples.dashboard_mount:api --port 8000
Then open http://127.0.0.1:8000/admin/jobs/ and sign in with the token.
"""

from fastapi import FastAPI

from taskflare import App
from taskflare.web import create_dashboard

app = App()  # $TASKFLARE_DATABASE_URL, else a local SQLite file
emails = app.queue("emails", dead_letter_queue="emails-dlq")


@app.job("send-report")
async def send_report(payload: dict) -> dict:
    return {"sent": True}


api = FastAPI()


@api.get("/")
async def home() -> dict:
    return {"hello": "world"}


# Sign-in with $TASKFLARE_API_TOKEN (may act) or $TASKFLARE_API_READ_TOKEN (read-only);
# without either, the dashboard answers requests from this machine only.
api.mount("/admin/jobs", create_dashboard(app))
