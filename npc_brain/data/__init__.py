"""Real NPC dialogue for training and evaluation, extracted at build time.

Sources are Debian game packages and the PyPI ``chitchat-dataset``; nothing
extracted is committed. See ``build.build_data`` and DESIGN.md ("Real dialogue
data").
"""

from .build import SOURCES, build_data, main
from .record import Line

__all__ = ["SOURCES", "Line", "build_data", "main"]
