"""`python -m taskflare` is the `taskflare` command."""

from .cli import main

main()
