"""`python -m portraitcraft.cli ...` runs the console script."""

from portraitcraft.cli.root import main

main()
