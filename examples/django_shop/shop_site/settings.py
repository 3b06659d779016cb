import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "dev-only-change-me")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "taskflare.integrations.django",  # TASKFLARE settings, tasks.py, manage.py taskflare
    "signups",
]
ROOT_URLCONF = "shop_site.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if os.environ.get("SHOP_POSTGRES_URL"):
    url = urlsplit(os.environ["SHOP_POSTGRES_URL"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(url.path.lstrip("/")),
            "USER": unquote(url.username or ""),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "",
            "PORT": url.port or "",
        }
    }
    # taskflare uses this database, in its own schema: jobs join the views' transactions.
    TASKFLARE = {"SCHEMA": os.environ.get("SHOP_TASKFLARE_SCHEMA", "taskflare")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SHOP_SQLITE", str(BASE_DIR / "shop.db")),
        }
    }
    # taskflare keeps its own SQLite file; jobs are stored when the view's transaction commits.
    TASKFLARE = {
        "DATABASE_URL": os.environ.get(
            "TASKFLARE_DATABASE_URL", f"sqlite:///{BASE_DIR / 'taskflare.db'}"
        )
    }
