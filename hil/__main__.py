"""``python -m hil``: the command line."""

from hil.app.cli.main import main

main()
