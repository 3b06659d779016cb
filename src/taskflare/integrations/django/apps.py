"""The Django application config: imports every installed app's `tasks` module."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

from .conf import read_settings


class TaskflareConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Registers the handlers declared in `<app>/tasks.py` (`TASKFLARE["TASKS_MODULE"]`)
    when Django starts, so web processes and workers know the same job types."""

    name = "taskflare.integrations.django"
    label = "taskflare"
    verbose_name = "taskflare"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        module = read_settings().tasks_module
        if module:
            autodiscover_modules(module)
