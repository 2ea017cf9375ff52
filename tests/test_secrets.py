"""No password or API key in any ``repr``, ``str``, log record or error message (issue 23 item 4).

Canaries go into ``REDIS_URL`` (``:password@`` and ``user:password@``), into the providers'
URLs as userinfo and into the API keys; the objects are built, used against a real
redis-server and the real emulator, and made to fail (a Redis that refuses the password, a
Redis that is not there, a provider that is not there, a provider whose error body quotes
the key); every text they produced is searched for the canaries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
import respx

from fixtures.ports import free_port
from fixtures.redis import RedisServer
from fixtures.servers import EmulatorServer
from samplemind_core import (
    AIManager,
    ChatRequest,
    ConfigError,
    HttpClient,
    HttpConfig,
    ResponseCache,
    SampleMindError,
    Settings,
)
from samplemind_core._config import mask_url

PASSWORD = "pw-CANARY-7f3a91"
URL_PASSWORD = "url-CANARY-55e0c2"
KEY = "sk-CANARYKEY0123456789abcdef"
CANARIES = (PASSWORD, URL_PASSWORD, KEY)


def _texts_of(*objects: object) -> list[str]:
    out: list[str] = []
    for obj in objects:
        if isinstance(obj, BaseException):
            out.append("".join(traceback.format_exception(obj)))
        out += [repr(obj), str(obj)]
    return out


def _assert_clean(texts: Iterable[str], records: Iterable[logging.LogRecord] = ()) -> None:
    everything = list(texts)
    for record in records:
        everything.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            everything.append("".join(traceback.format_exception(record.exc_info[1])))
    assert everything, "nothing was checked"
    for text in everything:
        for canary in CANARIES:
            assert canary not in text, f"secret {canary!r} leaked in: {text[:300]!r}"


def _env(redis_url: str, provider_url: Callable[[str], str]) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "OLLAMA_HOST": provider_url("ollama"),
        "OPENAI_BASE_URL": provider_url("openai"),
        "ANTHROPIC_BASE_URL": provider_url("anthropic"),
        "GEMINI_BASE_URL": provider_url("gemini"),
        "OPENAI_API_KEY": KEY,
        "ANTHROPIC_API_KEY": KEY,
        "GEMINI_API_KEY": KEY,
    }


def _with_userinfo(base: str, user: str = "proxy") -> str:
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{user}:{URL_PASSWORD}@{rest}"


# -- mask_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://app:s3@h:6379/0", "redis://app:***@h:6379/0"),
        (
            "rediss://app:s3@h:6380/0?ssl_ca_certs=/ca.pem",
            "rediss://app:***@h:6380/0?ssl_ca_certs=/ca.pem",
        ),
        ("unix:///tmp/r.sock?db=1&password=s3", "unix:///tmp/r.sock?db=1&password=***"),
        ("https://tok3n@proxy.example/v1", "https://***@proxy.example/v1"),
        ("http://u:p@ss:w@h/x", "http://u:***@h/x"),  # an '@' inside the password
        ("https://h/v1?api_key=s3&x=1#f", "https://h/v1?api_key=***&x=1#f"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("not a url at all", "not a url at all"),
        ("redis://:s3@h:notaport", "redis://:***@h:notaport"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "s3" not in mask_url(url).replace("ss:", "")  # the secret is gone


# -- config objects and their errors ------------------------------------------


@pytest.mark.parametrize("userinfo", [f":{PASSWORD}@", f"default:{PASSWORD}@"])
def test_settings_repr_masks_every_url_and_key(userinfo: str) -> None:
    env = _env(
        f"redis://{userinfo}127.0.0.1:6379/0",
        lambda name: _with_userinfo("http://127.0.0.1:1" + ("/v1" if name == "openai" else "")),
    )
    settings = Settings.from_env(env)
    assert settings.redis_url is not None and PASSWORD in settings.redis_url  # still usable
    texts = _texts_of(
        settings,
        settings.cache,
        settings.http,
        *settings.providers.values(),
        *(p.api_key for p in settings.providers.values()),
    )
    texts.append(f"{settings}")
    texts.append(
        repr(Settings.from_env({**env, "REDIS_URL": f"unix:///r.sock?password={PASSWORD}"}))
    )
    _assert_clean(texts)
    assert "default:***@" in repr(settings) or ":***@" in repr(settings)
    assert repr(settings).count("Secret('**********')") == 3


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OPENAI_BASE_URL", f"http://u:{PASSWORD}@h:notaport/v1"),
        ("OLLAMA_HOST", f"ftp://u:{PASSWORD}@h"),
        ("GEMINI_BASE_URL", f"http://u:{PASSWORD}@"),
        ("REDIS_URL", f"redis://u:{PASSWORD}@h:notaport/0"),
        ("REDIS_URL", f"http://u:{PASSWORD}@h/0"),
        ("OPENAI_API_KEY", f"{KEY} with spaces"),
    ],
)
def test_config_errors_never_echo_a_secret(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: value})
    assert var in str(info.value)
    _assert_clean(_texts_of(info.value))


# -- built, used and failing against real servers -------------------------------


async def _use(ai: AIManager, n: int = 3, what: str = "tag sample") -> list[object]:
    """Calls through every provider; returns the responses and the errors."""
    seen: list[object] = []
    for i in range(n):
        for provider in ("openai", "anthropic", "gemini", "ollama"):
            req = ChatRequest(
                messages=[{"role": "user", "content": f"{what} {i}"}], provider=provider
            )
            try:
                seen.append(await asyncio.wait_for(ai.complete(req), 30))
            except SampleMindError as exc:
                seen.append(exc)
            try:  # the streamed path sends the same URL (its own request preparation)
                seen.append(await asyncio.wait_for(_stream(ai, req), 30))
            except SampleMindError as exc:
                seen.append(exc)
    return seen


async def _stream(ai: AIManager, req: ChatRequest) -> object:
    async with ai.stream(req) as stream:
        async for _ in stream:
            pass
        return stream.response


def _manager(env: dict[str, str]) -> AIManager:
    """``AIManager.from_env(env)`` with the HTTP client's retry back-off at 1 ms instead of
    the default 0.1 s: the same attempts against providers that refuse, so every retry's
    log line and error is still searched, without seconds of sleeping between them."""
    settings = Settings.from_env(env)
    retry = dataclasses.replace(settings.http.retry, backoff_base_s=0.001)
    http = dataclasses.replace(settings.http, retry=retry)
    return AIManager(dataclasses.replace(settings, http=http))


def _objects_of(ai: AIManager) -> list[object]:
    objects: list[object] = [ai, ai.settings, ai.http, ai.router, ai.cache, ai._redis]
    if ai.cache is not None:
        objects.append(ai.cache.stats())
    objects += [ai.provider(name) for name in ("openai", "anthropic", "gemini", "ollama")]
    return objects


@pytest.mark.redis
@pytest.mark.live
@pytest.mark.parametrize(
    ("form", "transport"), [("password", "aiohttp"), ("user:password", "httpx")]
)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_manager_on_real_servers_leaks_nothing(
    redis_server_factory: Callable[..., RedisServer],
    emulator_server: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    transport: str,
    form: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = redis_server_factory(password=PASSWORD)
    user = "default:" if form == "user:password" else ":"
    good_url = f"redis://{user}{PASSWORD}@127.0.0.1:{server.port}/0"
    env = {
        **_env(good_url, lambda name: emulator_server.url + ("/v1" if name == "openai" else "")),
        "SAMPLEMIND_TRANSPORT": transport,
    }
    texts: list[str] = []
    # 1. the right password: calls are served and cached
    async with _manager(env) as ai:
        first = await _use(ai)
        again = await _use(ai, 1)
        assert any(getattr(r, "cached", False) for r in again), first[:2]
        texts += _texts_of(*_objects_of(ai), *first, *again)
    # 2. a wrong password (the real server refuses AUTH) and a Redis that is not there:
    #    the cache turns itself off with a logged reason; calls still succeed
    for bad in (
        f"redis://{user}wrong-{PASSWORD}@127.0.0.1:{server.port}/0",
        f"redis://{user}{PASSWORD}@127.0.0.1:{free_port()}/0",
    ):
        async with _manager({**env, "REDIS_URL": bad}) as ai:
            seen = await _use(ai, 1)
            texts += _texts_of(*_objects_of(ai), *seen)
            try:  # the raw client's own error, as a caller using it would see it
                await ai._redis.get("k")
            except Exception as exc:  # any error is checked for the canary
                texts += _texts_of(exc)
            else:
                pytest.fail("a wrong password or a closed port was accepted")
    # 3. providers behind URLs with a password in their userinfo, one of them not there
    port = free_port()
    env_down = _env(
        good_url,
        lambda name: _with_userinfo(
            f"http://127.0.0.1:{port}" + ("/v1" if name == "openai" else "")
        ),
    )
    async with _manager({**env_down, "SAMPLEMIND_TRANSPORT": transport}) as ai:
        seen = await _use(ai, 1, "not cached yet")
        assert all(isinstance(s, SampleMindError) for s in seen), seen
        texts += _texts_of(*_objects_of(ai), *seen)
    assert caplog.records, "the failures above log their reasons"
    _assert_clean(texts, caplog.records)


async def test_provider_error_quoting_the_key_and_url_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 whose body quotes the key and the URL (as OpenAI's does), and a transport error.

    respx patches httpx's own transport; the aiohttp transport's errors go through the
    same mapping seam and are covered on real sockets above.
    """
    caplog.set_level(logging.DEBUG)
    base = _with_userinfo("http://api.test/v1")
    settings = Settings.from_env({"OPENAI_BASE_URL": "http://api.test/v1", "OPENAI_API_KEY": KEY})
    body = {
        "error": {
            "message": f"Incorrect API key provided: {KEY} for {base}",
            "type": "invalid_request_error",
        }
    }
    texts: list[str] = []
    with respx.mock(assert_all_called=False) as mock:
        answers = iter([httpx.Response(401, json=body)])

        def openai(request: httpx.Request) -> httpx.Response:
            answer = next(answers, None)
            if answer is None:
                raise httpx.ConnectError(f"refused {base}", request=request)
            return answer

        mock.post(url__regex=r".*/chat/completions").mock(side_effect=openai)
        mock.route().mock(return_value=httpx.Response(400, json={"error": "fallbacks off"}))
        http = HttpClient(HttpConfig(transport="httpx"))  # respx patches httpx's transport
        async with AIManager(settings, http=http) as ai:
            for _ in range(2):
                try:
                    await ai.complete(
                        ChatRequest(messages=[{"role": "user", "content": "x"}], provider="openai")
                    )
                except SampleMindError as exc:
                    texts += _texts_of(exc)
                else:
                    pytest.fail("the mocked failure was not raised")
            texts += _texts_of(ai, ai.provider("openai"), http)
        await http.aclose()
    assert len(texts) > 4
    _assert_clean(texts, caplog.records)


@pytest.mark.redis
async def test_response_cache_repr_shows_no_redis_password(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(password=PASSWORD)
    client: Any = server.client()
    cache = ResponseCache(client)
    await cache.get(ChatRequest(messages=[{"role": "user", "content": "x"}]))
    _assert_clean(_texts_of(cache, client, client.connection_pool, cache.stats()))
    await client.aclose()


@pytest.mark.redis
def test_cache_cli_failure_shows_no_password(
    redis_server_factory: Callable[..., RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    from samplemind_core._cli import main

    server = redis_server_factory(password=PASSWORD)
    for url in (
        f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0",
        f"redis://default:{PASSWORD}@127.0.0.1:{free_port()}/0",
        f"redis://default:{PASSWORD}@127.0.0.1:notaport/0",
    ):
        try:
            code = main(["stats", "--redis-url", url])
        except SystemExit as exc:  # argparse refuses the bad URL
            code = int(str(exc.code))
        captured = capsys.readouterr()
        assert code in (1, 2), captured
        assert captured.err
        _assert_clean([captured.out, captured.err])
