#!/usr/bin/env python
"""A Django project using taskflare (docs/django.md).

    cd examples/django_shop
    python manage.py migrate
    python manage.py runserver                 # POST /signup/ email=ada@example.com
    python manage.py taskflare worker          # runs the welcome jobs
    python manage.py taskflare jobs list

SQLite by default (taskflare stores jobs at the commit); set SHOP_POSTGRES_URL
(postgresql://user:password@host:5432/name) and jobs are written in the view's own
transaction, in the schema `taskflare` of that database.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
