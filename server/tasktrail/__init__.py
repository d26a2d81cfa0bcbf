"""tasktrail: the task service of a database control plane."""

__version__ = "0.1.0"
