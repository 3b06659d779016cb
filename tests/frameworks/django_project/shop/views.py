"""A signup view: the row, a job and a message are written in one transaction."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from taskflare.integrations.django import enqueue, enqueue_many, get_app, send, send_batch

from .models import Signup


class Refused(Exception):
    pass


def signups(request: HttpRequest) -> JsonResponse:
    rows = Signup.objects.order_by("email").values("email", "welcomed")
    return JsonResponse({"signups": list(rows)})


def signup(request: HttpRequest) -> JsonResponse:
    email = request.POST["email"]
    seen: dict = {}
    try:
        with transaction.atomic():
            Signup.objects.create(email=email)
            job = enqueue("send-welcome", {"email": email})
            message = send("audit", {"signup": email})
            batch = send_batch("audit", [{"body": {"welcome": email}, "delay_seconds": 60}])
            tags = enqueue_many("tag-signup", [{"email": email, "tag": t} for t in ("new", "web")])
            seen = {
                "job": job.id if job else None,
                "message": message,
                "batch": batch,
                "tags": tags,
                # what another connection sees before the commit
                "jobs_visible_before_commit": len(
                    get_app().list_jobs_sync(type="send-welcome").jobs
                ),
            }
            if request.POST.get("rollback"):
                raise Refused
    except Refused:
        return JsonResponse(seen, status=409)
    return JsonResponse(seen)
