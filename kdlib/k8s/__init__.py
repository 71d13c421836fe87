"""Kubernetes objects as Python data, and the raw-JSON watcher."""
