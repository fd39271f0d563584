"""Algorithms the tests run: adapter/ (imported by name), cli/ (projects), runner/ (packages)."""
