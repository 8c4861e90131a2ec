"""CIEDE2000 colour difference: moved to tools/colour_difference.py (pure functions shared with the agents)."""

from portraitcraft.tools.colour_difference import *  # noqa: F403
from portraitcraft.tools.colour_difference import ciede2000, srgb_to_lab  # noqa: F401
