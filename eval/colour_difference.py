"""CIEDE2000 colour difference: moved to tools/colour_difference.py (pure functions shared with the agents)."""

from tools.colour_difference import *  # noqa: F403
from tools.colour_difference import ciede2000, srgb_to_lab  # noqa: F401
