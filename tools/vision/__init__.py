"""Seeing the portrait: real pose, person mask, face and gaze on CPU, and composition features.

Importing this package loads no model (each loads on first use, once per process: `portraitcraft.tools.vision.models`).

Example:
    >>> from portraitcraft.tools.vision import analyze
    >>> analysis = analyze("portrait.png")  # doctest: +SKIP
    >>> analysis.subject.horizontal  # doctest: +SKIP
    'left'
"""

from portraitcraft.tools.vision.analysis import Analysis, analyze

__all__ = ["Analysis", "analyze"]
