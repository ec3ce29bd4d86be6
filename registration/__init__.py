"""Model package validation and registration."""
