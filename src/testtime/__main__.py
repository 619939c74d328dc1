"""`python -m testtime` runs the CLI."""

from testtime.cli import main

main()
