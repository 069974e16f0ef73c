"""Image registry adapters (the ImageRegistry port)."""
