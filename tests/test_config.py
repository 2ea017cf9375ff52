"""Settings: explicit objects, and from_env() as the one reader of the environment."""

from __future__ import annotations

import pytest

from samplemind_core import (
    CacheConfig,
    ConfigError,
    RetryConfig,
    Secret,
    Settings,
)


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.redis_url is None
    assert s.provider("ollama").base_url == "http://localhost:11434"
    assert s.provider("openai").base_url == "https://api.openai.com/v1"
    assert s.provider("anthropic").base_url == "https://api.anthropic.com"
    assert s.provider("gemini").base_url == "https://generativelanguage.googleapis.com"
    assert all(s.provider(p).api_key is None for p in ("openai", "anthropic", "gemini"))
    assert s.cache.ttl_s == 7 * 24 * 3600
    assert s.cache.op_timeout_s == 0.05
    assert s.cache.max_value_bytes == 1 << 20
    assert s.http.max_connections == 100 and s.http.max_keepalive_connections == 50
    assert s.http.connect_timeout_s == 5 and s.http.read_timeout_s == 30
    assert s.http.retry.attempts == 3


def test_from_env_reads_every_documented_variable() -> None:
    env = {
        "REDIS_URL": "redis://:pw@127.0.0.1:6390/0",
        "REDIS_CLUSTER": "1",
        "SAMPLEMIND_FINGERPRINT_KEY": "ab" * 32,
        "SAMPLEMIND_CACHE_NAMESPACE": "tenant-a",
        "SAMPLEMIND_CACHE_TTL": "60",
        "SAMPLEMIND_HTTP2": "true",
        "SAMPLEMIND_TRANSPORT": "aiohttp",
        "OLLAMA_HOST": "0.0.0.0:11500",
        "OPENAI_BASE_URL": "http://127.0.0.1:9000/v1/",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9000",
        "GEMINI_BASE_URL": "http://127.0.0.1:9000",
        "OPENAI_API_KEY": "sk-openai",
        "ANTHROPIC_API_KEY": "sk-ant",
        "GEMINI_API_KEY": "g-key",
    }
    s = Settings.from_env(env)
    assert s.redis_url == env["REDIS_URL"] and s.redis_cluster
    assert s.cache.key_bytes() == bytes.fromhex("ab" * 32)
    assert s.cache.namespace == "tenant-a" and s.cache.ttl_s == 60
    assert s.http.http2 and s.http.transport == "aiohttp"
    assert s.provider("ollama").base_url == "http://localhost:11500"
    assert s.provider("openai").base_url == "http://127.0.0.1:9000/v1"
    key = s.provider("openai").api_key
    assert key is not None and key.get_secret_value() == "sk-openai"


def test_model_variables_set_each_providers_default_model() -> None:
    env = {
        "OPENAI_MODEL": "/models/gemma-3-270m-q4_k_m.gguf",
        "OLLAMA_MODEL": "gemma3:270m",
        "ANTHROPIC_MODEL": "claude-3-5-haiku-latest",
        "GEMINI_MODEL": " gemini-2.0-flash ",
    }
    s = Settings.from_env(env)
    assert s.provider("openai").default_model == "/models/gemma-3-270m-q4_k_m.gguf"
    assert s.provider("ollama").default_model == "gemma3:270m"
    assert s.provider("anthropic").default_model == "claude-3-5-haiku-latest"
    assert s.provider("gemini").default_model == "gemini-2.0-flash"
    unset = Settings.from_env({"OPENAI_MODEL": "  "})
    assert all(unset.provider(p).default_model is None for p in unset.providers)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SAMPLEMIND_CACHE_TTL": "soon"}, "SAMPLEMIND_CACHE_TTL"),
        ({"SAMPLEMIND_TRANSPORT": "curl"}, "SAMPLEMIND_TRANSPORT"),
        ({"SAMPLEMIND_FINGERPRINT_KEY": "short"}, "64 hex"),
        ({"SAMPLEMIND_CACHE_NAMESPACE": "a:b"}, "namespace"),
        ({"SAMPLEMIND_CACHE_NAMESPACE": "a\x07b"}, "namespace"),
        ({"SAMPLEMIND_CACHE_NAMESPACE": "a\udcffb"}, "namespace"),
        ({"SAMPLEMIND_CACHE_TTL": "nan"}, "SAMPLEMIND_CACHE_TTL"),
        ({"SAMPLEMIND_CACHE_TTL": "inf"}, "SAMPLEMIND_CACHE_TTL"),
        ({"SAMPLEMIND_CACHE_TTL": "-5"}, "SAMPLEMIND_CACHE_TTL"),
        ({"SAMPLEMIND_CACHE_TTL": "1e300"}, "SAMPLEMIND_CACHE_TTL"),
        ({"SAMPLEMIND_HTTP2": "maybe"}, "SAMPLEMIND_HTTP2"),
        ({"REDIS_CLUSTER": "2"}, "REDIS_CLUSTER"),
        ({"REDIS_URL": "garbage"}, "REDIS_URL"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h:port"}, "REDIS_URL"),
        ({"OLLAMA_HOST": "localhost:abc"}, "OLLAMA_HOST"),
        ({"OPENAI_BASE_URL": "api.openai.com"}, "OPENAI_BASE_URL"),
        ({"ANTHROPIC_BASE_URL": "ftp://x"}, "ANTHROPIC_BASE_URL"),
        ({"GEMINI_BASE_URL": "https://"}, "GEMINI_BASE_URL"),
        ({"OPENAI_API_KEY": "sk-has space"}, "OPENAI_API_KEY"),
        ({"GEMINI_API_KEY": "k\u00e9y"}, "GEMINI_API_KEY"),
        ({"OPENAI_MODEL": "gemma 3"}, "OPENAI_MODEL"),
        ({"OLLAMA_MODEL": "gemma\x073"}, "OLLAMA_MODEL"),
    ],
)
def test_bad_environment_gives_a_clear_error(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env(env)


def test_secrets_never_show() -> None:
    s = Settings.from_env({"OPENAI_API_KEY": "sk-CANARY-123"})
    for text in (repr(s), str(s), f"{s.provider('openai')}", repr(s.provider("openai").api_key)):
        assert "sk-CANARY-123" not in text


def test_secret_equality_and_truth() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert not Secret("") and Secret("x")


def test_invalid_objects_are_refused() -> None:
    with pytest.raises(ConfigError):
        RetryConfig(attempts=0)
    with pytest.raises(ConfigError):
        CacheConfig(ttl_s=0)
    with pytest.raises(ConfigError, match="unknown provider"):
        Settings().provider("mistral")


def test_with_provider_changes_one_provider() -> None:
    s = Settings().with_provider("ollama", base_url="http://127.0.0.1:1")
    assert s.provider("ollama").base_url == "http://127.0.0.1:1"
    assert s.provider("openai").base_url == Settings().provider("openai").base_url


def test_errors_never_echo_a_password_or_a_key() -> None:
    for env in (
        {"REDIS_URL": "http://:hunter2-pw@127.0.0.1:6379"},
        {"ANTHROPIC_API_KEY": "sk-ant-hunter2 x"},
    ):
        with pytest.raises(ConfigError) as info:
            Settings.from_env(env)
        assert "hunter2" not in str(info.value)


def test_valid_values_still_pass() -> None:
    s = Settings.from_env(
        {
            "REDIS_URL": "unix:///tmp/redis.sock",
            "REDIS_CLUSTER": "off",
            "SAMPLEMIND_HTTP2": "Yes",
            "SAMPLEMIND_CACHE_TTL": "0.5",
            "OLLAMA_HOST": "http://gpu-box",
            "GEMINI_BASE_URL": "  ",  # blank counts as unset
        }
    )
    assert s.redis_url == "unix:///tmp/redis.sock" and not s.redis_cluster and s.http.http2
    assert s.cache.ttl_s == 0.5
    assert s.provider("ollama").base_url == "http://gpu-box:11434"
    assert s.provider("gemini").base_url == "https://generativelanguage.googleapis.com"
