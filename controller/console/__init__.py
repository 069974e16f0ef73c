"""The web console: server-rendered pages under /ui over the controller's own store."""
