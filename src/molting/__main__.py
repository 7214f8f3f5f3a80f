"""`python -m molting` is the `molt` command."""

from molting.cli import main

main()
