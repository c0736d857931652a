"""`python -m graphconda` runs the CLI."""

from graphconda.cli import main

main()
