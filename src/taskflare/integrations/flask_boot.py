"""`taskflare.integrations.flask_boot:app`: the taskflare app of the Flask app that
`$FLASK_APP` names (or `wsgi.py` / `app.py` in the current folder, as `flask` finds it),
for the `taskflare` command line and the worker processes its supervisor starts."""

from __future__ import annotations

import os

from flask.cli import ScriptInfo

from .flask import EXTENSION

app = ScriptInfo(app_import_path=os.environ.get("FLASK_APP")).load_app().extensions[EXTENSION].app
