"""Smoke tests of each real service that deploy/local/ starts."""
