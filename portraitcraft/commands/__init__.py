"""CLI sub-command groups, one module each; portraitcraft/cli.py registers them."""
