"""Shared pytest configuration: fixtures every test area can use."""

pytest_plugins = ["tests.dockerd", "tests.s3server"]
