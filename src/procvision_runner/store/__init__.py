"""The package store: offline zips installed into isolated venvs, and their lifecycle."""
