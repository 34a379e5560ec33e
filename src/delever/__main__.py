"""``python -m delever`` runs the command line."""

from delever.cli import app

app()
