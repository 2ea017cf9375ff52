"""Root conftest: loads the project's pytest plugin (fixtures/plugin.py) for tests/ and bench/."""

pytest_plugins = ["fixtures.plugin"]
