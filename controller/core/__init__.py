"""The controller's application core: submission, lifecycle supervision, views."""
