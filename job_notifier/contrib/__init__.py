"""Integrations with job queues and web frameworks."""
