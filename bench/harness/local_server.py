"""A real local model server for the live stream suite: which one the user named, what it serves.

The user names the server the way the layer reads it (:meth:`Settings.from_env
<samplemind_core.Settings.from_env>`, the one reader of the environment):

* ``OPENAI_BASE_URL=http://127.0.0.1:8081/v1``: any OpenAI-compatible server (llama.cpp's
  ``llama-server``, ``python -m llama_cpp.server``, vLLM, LM Studio, Ollama's ``/v1``);
* ``OLLAMA_HOST=127.0.0.1:11434``: Ollama's own API. Ollama at its default address
  (``http://localhost:11434``) counts as named when it answers there.

The model is the one given with ``OPENAI_MODEL`` / ``OLLAMA_MODEL``
(``ProviderConfig.default_model``) or, without one, asked of the server
(``GET {base}/models``, Ollama ``GET /api/tags``): the first model it lists, and the
record says so. A server that was named but does not answer is a
:class:`~samplemind_core.ConfigError` (never a silent skip); one not named is
:data:`NOT_NAMED`, and the suite skips with that reason.

What answered is recorded with every figure (``extra_info["local_model"]``, see
:meth:`LocalServer.info`): the model name the server put in its replies, the one asked
for, the server (told from what its API says of itself) and its address. A server that
turns out to be the SampleMind emulator says so, and its figures are never taken for a
model's (``reports/streams.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from bench.figures import display_model
from samplemind_core import ConfigError, Secret, Settings

__all__ = [
    "EMULATOR",
    "LOCAL_PROVIDERS",
    "NOT_NAMED",
    "NO_KEY",
    "LocalServer",
    "discover",
    "is_loopback",
    "named_providers",
]

LOCAL_PROVIDERS: Final = ("openai", "ollama")
"""The APIs a local model server speaks: OpenAI-compatible, or Ollama's own."""

NOT_NAMED: Final = (
    "no local model server named: start one and set OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 "
    "(llama.cpp, vLLM, LM Studio) or OLLAMA_HOST=HOST:PORT (Ollama), optionally OPENAI_MODEL / "
    "OLLAMA_MODEL (README: 'Against a real local model')"
)
EMULATOR: Final = "the SampleMind emulator"
NO_KEY: Final = "sk-local-server-needs-no-key"
"""The placeholder API key :meth:`LocalServer.settings` gives an OpenAI-compatible local server."""
DISCOVERY_TIMEOUT_S: Final = 5.0

_DEFAULTS: Final = Settings()
_OWNED_BY: Final[Mapping[str, str]] = {
    "me": "llama.cpp (llama-cpp-python)",
    "llamacpp": "llama.cpp (llama-server)",
    "vllm": "vLLM",
    "library": "Ollama (OpenAI API)",
    "organization_owner": "LM Studio",
}
"""``owned_by`` of ``GET /v1/models`` as each server writes it, to the server's name."""
_VAR: Final = {"openai": "OPENAI_BASE_URL", "ollama": "OLLAMA_HOST"}


def named_providers(settings: Settings) -> tuple[str, ...]:
    """The local-server APIs whose address ``settings`` changed from the default."""
    return tuple(
        name
        for name in LOCAL_PROVIDERS
        if settings.provider(name).base_url != _DEFAULTS.provider(name).base_url
    )


def is_loopback(host: str) -> bool:
    """``localhost`` or an address of the loopback range (127.0.0.0/8, ::1).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("10.0.0.5")
    (True, True, False)
    """
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class LocalServer:
    """A named model server and the model the suite asks it for."""

    provider: str
    """``openai`` (OpenAI-compatible API) or ``ollama``."""
    base_url: str
    model: str
    """The model every call asks for."""
    model_source: str
    """Where :attr:`model` came from: ``OPENAI_MODEL`` or ``asked of the server (...)``."""
    listed: tuple[str, ...]
    """The models the server listed."""
    server: str
    """What the server is, told from its API (``llama.cpp (llama-cpp-python)``, ``Ollama``,
    :data:`EMULATOR`, ...)."""

    @property
    def address(self) -> str:
        """``host:port`` of the server."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"

    @property
    def local(self) -> bool:
        """True when the server is on this machine (a loopback address)."""
        return is_loopback(urlsplit(self.base_url).hostname or "")

    @property
    def is_emulator(self) -> bool:
        return self.server == EMULATOR

    def label(self, served_model: str | None = None) -> str:
        """``live local model gemma-3-270m via llama.cpp (...) at 127.0.0.1:8081``."""
        model = display_model(served_model or self.model)
        if self.is_emulator:
            return f"{EMULATOR} standing in for a local model ({model}) at {self.address}"
        where = "live local model" if self.local else "live model (not on this machine)"
        return f"{where} {model} via {self.server} at {self.address}"

    def settings(self, base: Settings) -> Settings:
        """``base`` set up to call this server: its model as the provider's default, and for
        the OpenAI API a placeholder key when none is set (a local server asks for none, the
        layer's OpenAI adapter does not call without one; the server already answered
        ``GET /v1/models`` without it)."""
        cfg = base.provider(self.provider)
        key = cfg.api_key
        if self.provider == "openai" and not key:
            key = Secret(NO_KEY)
        return base.with_provider(self.provider, default_model=self.model, api_key=key)

    def info(self, served_model: str | None = None) -> dict[str, Any]:
        """What ``extra_info["local_model"]`` records: the report reads it back."""
        return {
            "provider": self.provider,
            "served_model": served_model,
            "model": self.model,
            "model_source": self.model_source,
            "listed_models": list(self.listed),
            "server": self.server,
            "address": self.address,
            "local": self.local,
            "emulator": self.is_emulator,
            "label": self.label(served_model),
        }


def _root(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


async def _is_emulator(client: httpx.AsyncClient, base_url: str) -> bool:
    try:
        r = await client.get(_root(base_url) + "/__emulator__/stats")
        return r.status_code == 200 and isinstance(r.json().get("calls"), dict)
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


async def discover(
    settings: Settings, provider: str, *, timeout_s: float = DISCOVERY_TIMEOUT_S
) -> LocalServer | None:
    """Ask the server ``settings`` names for ``provider`` what it serves.

    ``None`` when ``provider``'s address was not named and nothing answers at Ollama's
    default address (the caller skips with :data:`NOT_NAMED`). A named server that does
    not answer, answers with an error or lists no model while none was given is a
    :class:`~samplemind_core.ConfigError` saying which variable named it.
    """
    if provider not in LOCAL_PROVIDERS:
        raise ConfigError(f"a local model server speaks {LOCAL_PROVIDERS}, not {provider!r}")
    cfg = settings.provider(provider)
    named = provider in named_providers(settings)
    if not named and provider != "ollama":
        return None
    var = _VAR[provider]
    path = "/models" if provider == "openai" else "/api/tags"
    url = cfg.base_url.rstrip("/") + path
    headers = {}
    if provider == "openai" and cfg.api_key:
        headers["authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        try:
            reply = await client.get(url, headers=headers)
            reply.raise_for_status()
            body = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            if not named:  # nothing at Ollama's default address: not named
                return None
            raise ConfigError(
                f"{var} names {cfg.base_url}, but GET {path} there failed "
                f"({type(exc).__name__}: {exc}); is the model server running?"
            ) from exc
        emulator = await _is_emulator(client, cfg.base_url)
    listed, server = _listing(provider, body)
    if not named and server != "Ollama":
        return None
    if emulator:
        server = EMULATOR
    given = cfg.default_model
    if given:
        model, source = given, f"{provider.upper()}_MODEL"
    elif listed:
        model = listed[0]
        source = f"asked of the server (GET {urlsplit(url).path}" + (
            f": the first of {len(listed)} listed)" if len(listed) > 1 else ")"
        )
    else:
        raise ConfigError(
            f"the server at {cfg.base_url} ({var}) lists no model under GET {urlsplit(url).path}; "
            f"load one, or name it with {provider.upper()}_MODEL"
        )
    return LocalServer(provider, cfg.base_url, model, source, listed, server)


def _listing(provider: str, body: Any) -> tuple[tuple[str, ...], str]:
    """The model names of a ``/v1/models`` or ``/api/tags`` reply, and the server's name."""
    if provider == "ollama":
        models = body.get("models") if isinstance(body, Mapping) else None
        if not isinstance(models, list):
            return (), "an unknown server (no Ollama model list)"
        names = tuple(
            str(m.get("model") or m.get("name"))
            for m in models
            if isinstance(m, Mapping) and (m.get("model") or m.get("name"))
        )
        return names, "Ollama"
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        return (), "an OpenAI-compatible server"
    entries = [m for m in data if isinstance(m, Mapping) and m.get("id")]
    owners = {str(m.get("owned_by", "")) for m in entries}
    server = next(
        (_OWNED_BY[o] for o in sorted(owners) if o in _OWNED_BY), "an OpenAI-compatible server"
    )
    return tuple(str(m["id"]) for m in entries), server
