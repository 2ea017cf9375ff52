"""A real local model server for the stream suite (issue 20 §4), proven without a model.

The emulator (a real server process speaking the OpenAI and Ollama APIs) stands in for the
"local server" the user names; respx stands in only where a server of another kind
(llama-cpp-python, a remote host) or a fault is needed. The report's claim is checked on
synthetic results of a real local model and on a real run against the emulator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import respx

from bench.cli import main as bench_main
from bench.figures import display_model
from bench.harness.local_server import (
    EMULATOR,
    NO_KEY,
    NOT_NAMED,
    discover,
    named_providers,
)
from bench.harness.streams import headline_lines
from bench.results import read_folder
from fixtures.ports import free_port
from samplemind_core import ConfigError, Settings
from tests.test_report_streams import _entry, _folder

GGUF = "/tmp/gguf/gemma-3-270m-q4_k_m.gguf"
LLAMA_CPP_MODELS = {  # llama-cpp-python's server: GET /v1/models (owned_by "me")
    "object": "list",
    "data": [{"id": GGUF, "object": "model", "owned_by": "me", "permissions": []}],
}


def _env(**env: str) -> Settings:
    return Settings.from_env(env)


async def test_the_emulator_as_a_named_openai_server_is_asked_for_its_model(
    emulator_server: Any,
) -> None:
    settings = _env(OPENAI_BASE_URL=f"{emulator_server.url}/v1", OPENAI_API_KEY="sk-x")
    assert named_providers(settings) == ("openai",)
    server = await discover(settings, "openai")
    assert server is not None
    async with httpx.AsyncClient() as client:
        reply = await client.get(
            f"{emulator_server.url}/v1/models", headers={"authorization": "Bearer k"}
        )
    listed = [m["id"] for m in reply.json()["data"]]
    assert server.model == listed[0] and server.listed == tuple(listed)
    assert (
        server.model_source
        == f"asked of the server (GET /v1/models: the first of {len(listed)} listed)"
    )
    assert server.server == EMULATOR and server.is_emulator and server.local
    assert server.address == f"127.0.0.1:{emulator_server.port}"
    label = server.label(served_model="gpt-4o-mini")
    assert label.startswith(EMULATOR) and "live local model" not in label


async def test_a_named_model_wins_over_the_servers_list(emulator_server: Any) -> None:
    settings = _env(OLLAMA_HOST=emulator_server.url, OLLAMA_MODEL="gemma3:270m")
    server = await discover(settings, "ollama")
    assert server is not None and server.provider == "ollama"
    assert server.model == "gemma3:270m" and server.model_source == "OLLAMA_MODEL"
    assert server.listed  # still asked: the record shows what the server had
    info = server.info("gemma3:270m")
    assert info["served_model"] == "gemma3:270m" and info["emulator"] is True


async def test_a_named_server_that_does_not_answer_is_a_clear_error() -> None:
    port = free_port()
    settings = _env(OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(
        ConfigError, match=rf"OPENAI_BASE_URL names http://127.0.0.1:{port}/v1.*GET /models"
    ):
        await discover(settings, "openai", timeout_s=2.0)


async def test_nothing_named_means_none_and_the_skip_reason_says_how() -> None:
    settings = _env()
    assert named_providers(settings) == ()
    assert await discover(settings, "openai") is None
    with respx.mock(assert_all_called=True) as mock:  # nothing at Ollama's default address
        mock.get("http://localhost:11434/api/tags").mock(side_effect=httpx.ConnectError("refused"))
        assert await discover(settings, "ollama") is None
    assert "OPENAI_BASE_URL=http://127.0.0.1:PORT/v1" in NOT_NAMED and "OLLAMA_HOST" in NOT_NAMED
    with pytest.raises(ConfigError, match="speaks"):
        await discover(settings, "anthropic")


async def test_ollama_answering_at_its_default_address_counts_as_named() -> None:
    tags = {"models": [{"name": "gemma3:270m", "model": "gemma3:270m"}]}
    with respx.mock(assert_all_called=False) as mock:
        mock.get("http://localhost:11434/api/tags").respond(200, json=tags)
        mock.get("http://localhost:11434/__emulator__/stats").respond(404)
        server = await discover(_env(), "ollama")
    assert server is not None and server.server == "Ollama" and server.model == "gemma3:270m"
    assert (
        server.label("gemma3:270m") == "live local model gemma3:270m via Ollama at localhost:11434"
    )


async def test_llama_cpp_python_is_told_by_its_model_list() -> None:
    settings = _env(OPENAI_BASE_URL="http://127.0.0.1:8081/v1")
    with respx.mock(assert_all_called=True) as mock:
        mock.get("http://127.0.0.1:8081/v1/models").respond(200, json=LLAMA_CPP_MODELS)
        mock.get("http://127.0.0.1:8081/__emulator__/stats").respond(
            404, json={"detail": "Not Found"}
        )
        server = await discover(settings, "openai")
    assert server is not None and server.model == GGUF
    assert server.server == "llama.cpp (llama-cpp-python)"
    assert server.label(GGUF) == (
        "live local model gemma-3-270m-q4_k_m via llama.cpp (llama-cpp-python) at 127.0.0.1:8081"
    )


async def test_a_server_listing_no_model_needs_one_named() -> None:
    settings = _env(OPENAI_BASE_URL="http://127.0.0.1:8081/v1")
    with respx.mock(assert_all_called=False) as mock:
        mock.get("http://127.0.0.1:8081/v1/models").respond(
            200, json={"object": "list", "data": []}
        )
        mock.get("http://127.0.0.1:8081/__emulator__/stats").respond(404)
        with pytest.raises(ConfigError, match=r"lists no model.*OPENAI_MODEL"):
            await discover(settings, "openai")


async def test_a_server_off_this_machine_is_not_called_local() -> None:
    settings = _env(OPENAI_BASE_URL="http://gpu-box.example:8000/v1", OPENAI_MODEL="qwen")
    with respx.mock(assert_all_called=False) as mock:
        mock.get("http://gpu-box.example:8000/v1/models").respond(
            200, json={"object": "list", "data": [{"id": "qwen", "owned_by": "vllm"}]}
        )
        mock.get("http://gpu-box.example:8000/__emulator__/stats").respond(404)
        server = await discover(settings, "openai")
    assert server is not None and not server.local and server.server == "vLLM"
    assert server.label("qwen").startswith("live model (not on this machine) qwen via vLLM")


async def test_settings_call_the_server_for_its_model_without_a_key_of_the_users() -> None:
    settings = _env(OPENAI_BASE_URL="http://127.0.0.1:8081/v1")
    with respx.mock(assert_all_called=False) as mock:
        mock.get("http://127.0.0.1:8081/v1/models").respond(200, json=LLAMA_CPP_MODELS)
        mock.get("http://127.0.0.1:8081/__emulator__/stats").respond(404)
        server = await discover(settings, "openai")
    assert server is not None
    called = server.settings(settings).provider("openai")
    assert called.default_model == GGUF and called.base_url == "http://127.0.0.1:8081/v1"
    assert called.api_key is not None and called.api_key.get_secret_value() == NO_KEY
    own = server.settings(_env(OPENAI_API_KEY="sk-mine")).provider("openai").api_key
    assert own is not None and own.get_secret_value() == "sk-mine"


def test_display_model() -> None:
    assert display_model(GGUF) == "gemma-3-270m-q4_k_m"
    assert display_model("C:\\models\\x.GGUF") == "x"
    assert display_model("llama3.2:3b") == "llama3.2:3b"


# --------------------------------------------------------------------------- the report


def _local_info(*, emulator: bool = False, local: bool = True) -> dict[str, Any]:
    label = (
        f"{EMULATOR} standing in for a local model (gpt-4o-mini) at 127.0.0.1:9"
        if emulator
        else "live local model gemma-3-270m-q4_k_m via llama.cpp (llama-cpp-python) at 127.0.0.1:8081"
        if local
        else "live model (not on this machine) qwen via vLLM at gpu-box.example:8000"
    )
    return {
        "provider": "openai",
        "served_model": GGUF,
        "model": GGUF,
        "server": EMULATOR if emulator else "llama.cpp (llama-cpp-python)",
        "local": local,
        "emulator": emulator,
        "label": label,
    }


def _local_entry(
    kind: str, ttft_ms: list[float], info: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    params: dict[str, Any] = {"world": "local", "transport": "aiohttp", "provider": "openai"}
    if kind.startswith("short_"):
        prompt = "new" if kind == "short_new" else "cached_prefix"
        params |= {"cache": "cold", "prompt": prompt, "answer": "short"}
        extra_info: dict[str, Any] = {"local_model": info}
    else:
        prompt = "cached_prefix" if kind == "prefix" else "new"
        params |= {"cache": "replay" if kind == "replay" else "cold", "prompt": prompt}
        params["concurrency"] = 4 if kind == "c4" else 1
        extra_info = {
            "local_model": info,
            "stream": {"samples_ms": {"ttft": ttft_ms, "itl": [20.0] * 4}},
            **extra,
        }
    label = f"local-aiohttp-openai-{kind}"
    return {
        "name": f"test_stream_local[{label}]",
        "fullname": f"bench/suites/test_stream.py::test_stream_local[{label}]",
        "group": "stream/local-openai",
        "params": params,
        "param": label,
        "stats": {"data": [v / 1e3 for v in ttft_ms]},
        "extra_info": extra_info,
    }


def _run(tmp_path: Path, new: list[float], prefix: list[float], **info_kw: Any) -> Any:
    from reports.data import load_run

    info = _local_info(**info_kw)
    benches = [
        _local_entry(
            "new",
            new,
            info,
            cut_streams=3,
            concurrent_streams=4,
            ttft_new_p50_ms=float(np.median(new)),
        ),
        _local_entry("prefix", prefix, info),
        _local_entry("c4", [300.0, 900.0, 1500.0, 2100.0], info),
        _local_entry("replay", [0.5, 0.6], info),
        _local_entry("short_new", [180.0, 260.0], info),
        _local_entry("short_prefix", [120.0, 140.0], info),
    ]
    for kind in ("new", "prefix", "c4"):  # the -itl twins: inter-token gaps, never a TTFT
        twin = _local_entry(kind, [900.0] * 6, info)
        twin["params"]["figure"] = "itl"
        twin["name"] = twin["name"].replace("]", "-itl]")
        twin["fullname"] = twin["fullname"].replace("]", "-itl]")
        twin["param"] += "-itl"
        twin["extra_info"] = {"local_model": info}
        benches.append(twin)
    root = tmp_path / "run"
    root.mkdir()
    (root / "stream.json").write_text(json.dumps({"benchmarks": benches}))
    manifest = {
        "format": "samplemind-bench-results",
        "version": 1,
        "created": "2026-12-06T00:00:00+00:00",
        "mode": "live",
        "quick": True,
        "suites": ["stream"],
        "files": ["stream.json"],
        "environment": {
            "cpu": "synthetic",
            "cores": 2,
            "python": "3.11",
            "platform": "Linux",
            "packages": {},
        },
        "commit": {"id": None, "dirty": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return load_run(root)


def test_claim_on_a_real_local_model_says_which_model_and_judges_new_prompts(
    tmp_path: Path,
) -> None:
    from reports.claims import DOES_NOT_HOLD
    from reports.provenance import benchmark_source
    from reports.streams import claim_local_ttft, local_model_entries, stream_claims

    run = _run(tmp_path, new=[143.0, 200.0, 422.0], prefix=[29.0, 31.0, 33.0])
    claim = claim_local_ttft(run)
    assert claim.verdict == DOES_NOT_HOLD
    assert "only with a cached prompt prefix" in claim.measured
    assert claim.measured.startswith("gemma-3-270m-q4_k_m: TTFT p50 200")
    assert "p50 31" in claim.measured
    assert "a short answer p50 220 ms new, 130 ms cached prefix" in claim.measured
    assert "3 of 4 cut short" in claim.measured and "a short answer p50" in claim.measured
    assert (
        "[from: live local model gemma-3-270m-q4_k_m via llama.cpp (llama-cpp-python) at 127.0.0.1:8081]"
        in claim.source
    )
    local = local_model_entries(run)
    assert len(local) == 9
    assert benchmark_source(run, local[0]).startswith("live local model gemma-3-270m-q4_k_m")
    [_, listed] = stream_claims(run)
    assert listed == claim  # no second "[from: ...]" appended


def test_claim_holds_only_when_every_prompt_kind_is_under_50_ms(tmp_path: Path) -> None:
    from reports.claims import HOLDS
    from reports.streams import claim_local_ttft

    run = _run(tmp_path, new=[20.0, 30.0, 40.0], prefix=[10.0, 12.0, 14.0])
    assert claim_local_ttft(run).verdict == HOLDS


@pytest.mark.parametrize(
    ("kw", "why"),
    [({"emulator": True}, "world-model input"), ({"local": False}, "not on this machine")],
)
def test_no_verdict_from_the_emulator_or_a_remote_server(
    tmp_path: Path, kw: dict[str, bool], why: str
) -> None:
    from reports.claims import NOT_MEASURED
    from reports.streams import claim_local_ttft

    claim = claim_local_ttft(_run(tmp_path, new=[20.0, 30.0], prefix=[10.0, 12.0], **kw))
    assert claim.verdict == NOT_MEASURED and why in claim.measured


def test_without_a_local_model_the_claim_says_how_to_measure_it(tmp_path: Path) -> None:
    from reports.claims import NOT_MEASURED
    from reports.data import load_run
    from reports.streams import claim_local_ttft

    run = load_run(_folder(tmp_path / "run", [_entry("ollama", "upstream", [30.0, 40.0], [4.0])]))
    claim = claim_local_ttft(run)
    assert claim.verdict == NOT_MEASURED and "world-model input" in claim.measured
    assert "Against a real local model" in claim.measured


# --------------------------------------------------------------------------- end to end


@pytest.mark.live
@pytest.mark.redis
@pytest.mark.slow
def test_a_live_stream_run_against_a_named_server_records_which_model_answered(
    emulator_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``samplemind-bench run --live --suite stream`` with OPENAI_BASE_URL / OLLAMA_HOST naming the
    emulator (one pytest subprocess): both APIs measured, the model named in every entry,
    the claim and the headline say it was the emulator, not a model."""
    from reports.claims import NOT_MEASURED
    from reports.data import load_run
    from reports.provenance import benchmark_source
    from reports.streams import claim_local_ttft, local_model_entries

    monkeypatch.setenv("OPENAI_BASE_URL", f"{emulator_server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")  # the emulator, like OpenAI, wants one
    monkeypatch.setenv("OLLAMA_HOST", emulator_server.url)
    monkeypatch.setenv("OLLAMA_MODEL", "llama3.2:3b-instruct-q8_0")
    out = tmp_path / "results"
    code = bench_main(
        [
            "run",
            "--live",
            "--quick",
            "-q",
            "--suite",
            "stream",
            "--out",
            str(out),
            "--pytest-arg=-k",
            "--pytest-arg=test_stream_local",
        ]
    )
    assert code == 0
    run = load_run(out)
    local = local_model_entries(run)
    assert {b.params["provider"] for b in local} == {"openai", "ollama"}
    for api in ("openai", "ollama"):
        kinds = {
            b.param.removeprefix(f"local-aiohttp-{api}-")
            for b in local
            if b.params["provider"] == api
        }
        streams = {"new", "prefix", "c4", "replay"}
        assert kinds == streams | {f"{k}-itl" for k in streams} | {"short_new", "short_prefix"}
    for b in local:
        info = b.extra_info["local_model"]
        assert info["emulator"] is True and info["served_model"]
        assert info["address"] == f"127.0.0.1:{emulator_server.port}"
    ollama = next(b for b in local if b.params["provider"] == "ollama")
    assert ollama.extra_info["local_model"]["served_model"] == "llama3.2:3b-instruct-q8_0"
    new = next(b for b in local if b.param.endswith("-openai-new"))
    assert new.extra_info["chunk_fidelity"] == 1.0 and new.extra_info["cut_streams"] == 0
    claim = claim_local_ttft(run)
    assert claim.verdict == NOT_MEASURED and EMULATOR in claim.source
    assert " ms cached prefix" in claim.measured and "-, " not in claim.measured
    assert len(run.suite("stream")) == len(local) == 2 * 10  # nothing without its model
    for b in local:  # every entry, the inter-token twins too, names its source
        assert benchmark_source(run, b) == b.extra_info["local_model"]["label"]
    raw = [b for b in read_folder(out).benchmarks if b.suite == "stream"]
    lines = [line for line in headline_lines(raw) if EMULATOR in line]
    assert len(lines) == 2 and all("cached prefix" in line for line in lines)
