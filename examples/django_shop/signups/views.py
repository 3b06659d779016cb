from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from taskflare.integrations.django import enqueue

from .models import Signup


@require_POST
def signup(request: HttpRequest) -> JsonResponse:
    email = request.POST.get("email", "")
    try:
        validate_email(email)
        with transaction.atomic():
            Signup.objects.create(email=email)
            # In the same transaction: no job without the row, no row without the job.
            job = enqueue("send-welcome", {"email": email}, idempotency_key=f"welcome:{email}")
    except ValidationError:
        return JsonResponse({"error": "email: not an email address"}, status=400)
    except IntegrityError:
        return JsonResponse({"error": "email: already signed up"}, status=409)
    # On PostgreSQL the job's id is known now; on SQLite it is stored at the commit.
    return JsonResponse({"email": email, "job": job.id if job else None}, status=201)
