"""`python -m crossfade`: the same command line as `crossfade`."""

from crossfade.cli import app

app()
