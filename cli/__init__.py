"""The `portraitcraft` command line: one module per command area, registered in `root`.

Commands parse their arguments, call one function below the CLI and print; nothing else lives here.
"""

from portraitcraft.cli.root import COMMANDS, SUBAPPS, app, build_command, main

__all__ = ["COMMANDS", "SUBAPPS", "app", "build_command", "main"]
