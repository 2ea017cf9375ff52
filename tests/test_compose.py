"""docker-compose.yml, Dockerfile.emulator and .dockerignore, validated without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from samplemind_core import Settings

ROOT = Path(__file__).resolve().parent.parent
LONG_RUNNING = ("redis", "ollama", "mongodb", "emulator")
MODELS = ("llama3.2:3b-instruct-q8_0", "qwen2.5:7b-instruct", "phi3.5:mini")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _expand(value: str) -> str:
    """Apply compose's ``${VAR:-default}`` with the defaults (no environment)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _flat(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*LONG_RUNNING, "ollama-pull"}
    assert compose["services"]["redis"]["image"] == "redis:7-alpine"
    assert compose["services"]["mongodb"]["image"] == "mongo:7"
    assert compose["services"]["ollama"]["image"].startswith("ollama/ollama")


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    test = check["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    for key in ("interval", "timeout", "retries"):
        assert key in check


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_ports_bound_to_loopback_only(compose: dict[str, Any], name: str) -> None:
    ports = compose["services"][name]["ports"]
    assert ports
    for port in ports:
        assert str(port).startswith("127.0.0.1:"), port


def test_healthcheck_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis_check = _flat(services["redis"]["healthcheck"]["test"])
    assert "redis-cli" in redis_check and "-a" in redis_check and "ping" in redis_check
    assert _flat(services["ollama"]["healthcheck"]["test"]).endswith("ollama list")
    mongo = _flat(services["mongodb"]["healthcheck"]["test"])
    assert "mongosh" in mongo and "db.runCommand({ping:1})" in mongo
    emulator = _flat(services["emulator"]["healthcheck"]["test"])
    assert "python" in emulator and "urllib.request" in emulator and ":8900/" in emulator


def test_redis_requires_a_password_and_persists_nothing(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert isinstance(command, list)
    password = command[command.index("--requirepass") + 1]
    assert _expand(password)  # a default exists
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"


def test_pull_service_pulls_the_three_models_after_ollama_is_healthy(
    compose: dict[str, Any],
) -> None:
    pull = compose["services"]["ollama-pull"]
    assert pull["depends_on"] == {"ollama": {"condition": "service_healthy"}}
    script = _flat(pull["command"])
    for model in MODELS:
        assert f"ollama pull {model}" in script
    assert pull.get("restart") == "no"
    assert "healthcheck" not in pull


def test_emulator_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["emulator"]["build"]
    assert build["dockerfile"] == "Dockerfile.emulator"
    dockerfile = (ROOT / "Dockerfile.emulator").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile and "samplemind-emulator" in dockerfile
    assert "--port 8900" in dockerfile and "HEALTHCHECK" in dockerfile


def test_env_the_services_provide_is_what_settings_reads(compose: dict[str, Any]) -> None:
    env = {k: _expand(v) for k, v in compose["x-samplemind-env"].items()}
    settings = Settings.from_env(env)
    assert settings.redis_url == env["REDIS_URL"]
    assert settings.provider("ollama").base_url == env["OLLAMA_HOST"]
    assert settings.provider("openai").base_url == env["OPENAI_BASE_URL"]
    assert settings.provider("anthropic").base_url == env["ANTHROPIC_BASE_URL"]
    assert settings.provider("gemini").base_url == env["GEMINI_BASE_URL"]
    for name in ("openai", "anthropic", "gemini"):
        key = settings.provider(name).api_key
        assert key is not None and key.get_secret_value() == env[f"{name.upper()}_API_KEY"]
    # the addresses match the published ports
    password = _expand(compose["services"]["redis"]["command"][2])
    assert env["REDIS_URL"] == f"redis://:{password}@127.0.0.1:6379/0"
    assert env["OPENAI_BASE_URL"].startswith("http://127.0.0.1:8900")
    # .env.example says the same
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example == env


def test_dockerignore_keeps_the_context_small() -> None:
    entries = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (
        ".git",
        ".venv",
        "venv",
        ".nox",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "__pycache__",
        "reports/out",
        ".benchmarks",
        "results",
        "profiles",
    ):
        assert required in entries, required
