"""Deployment: the desired state of an endpoint, the targets that serve it (local, docker, kubernetes), and rollout."""
