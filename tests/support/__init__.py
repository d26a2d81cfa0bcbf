"""Helpers of the tests, in plain modules (fixtures live in conftest.py)."""
