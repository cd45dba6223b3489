"""Recipes and experiments built on the anyres packages (not part of the installed library)."""
