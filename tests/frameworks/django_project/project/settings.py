"""A small Django project using taskflare. The database comes from the environment:
SHOP_PG_URL and SHOP_SCHEMA (PostgreSQL; Django's tables and taskflare's share the
schema), or SHOP_SQLITE and SHOP_TASKFLARE_URL (SQLite)."""

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django.contrib.contenttypes", "taskflare.integrations.django", "shop"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "project.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "root": {"level": "WARNING"}}

if os.environ.get("SHOP_PG_URL"):
    pg = urlsplit(os.environ["SHOP_PG_URL"])
    schema = os.environ["SHOP_SCHEMA"]
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(pg.path.lstrip("/")),
            "USER": pg.username or "",
            "PASSWORD": pg.password or "",
            "HOST": pg.hostname or "",
            "PORT": pg.port or "",
            "OPTIONS": {"options": f"-c search_path={schema}"},
        }
    }
    TASKFLARE = {"SCHEMA": schema}
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SHOP_SQLITE"]}
    }
    TASKFLARE = {"DATABASE_URL": os.environ["SHOP_TASKFLARE_URL"]}

if os.environ.get("SHOP_BAD_SETTING"):
    TASKFLARE["QUEUES"] = {"emails": {}}
