"""`taskflare.integrations.django.boot:app`: the app of the Django project named by
`$DJANGO_SETTINGS_MODULE`, for the `taskflare` command line (and the worker processes
its supervisor starts). Importing this module sets Django up."""

from __future__ import annotations

import django

from .conf import get_app

django.setup()
app = get_app()
