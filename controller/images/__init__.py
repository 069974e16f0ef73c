"""Task images built without Docker: OCI layouts from root filesystems, pushed with skopeo."""
