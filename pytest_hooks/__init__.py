"""pytest fixtures for applications that receive webhooks with flask_hooks."""
