"""The single entry point: ``nox -s <session>`` (``nox -l`` lists them).

Thin sessions over one helper (:func:`_install`) that installs this project with the extras a
session needs; every dependency is declared once, in ``pyproject.toml``'s extras. Cheap sessions
run by default (``nox``: tests, lint, typecheck); heavy ones are ``default=False``.

    nox -s report                 # MAIN JOB: quick mocked benchmarks + report -> reports/out/index.html
    nox -s report -- --full       # the full mocked grid (about 10 minutes)
    nox -s tests -- -k gate -x    # posargs go to pytest
    nox -s tests -- --fast        # the fast tier: tests not marked slow (the edit loop)
    nox -s bench -- --suite cache # posargs go to `samplemind-bench run`
    nox -s gate                   # gate the working tree against `main`, interleaved in this job
    nox -s gate -- results/a results/b
    nox -s gate_study             # measure the gate's A/A false alarms and power (~25 min)
    nox -s gate_e2e               # the same through real `gate --baseline-ref` runs (~45 min)
    nox -s study -- instructions aa --suite router --runs 10 --out DIR   # any study in studies/
    nox -s up / down / ps / logs / models / pull_models   # docker compose services

Every session logs each effective setting and where it came from (posargs, environment, default).
Use ``nox --no-venv -s tests`` (or ``--force-venv-backend none``) to run in the current
interpreter, with the project already installed.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.needs_version = ">=2024.4"
nox.options.reuse_venv = "yes"
nox.options.error_on_external_run = False
nox.options.sessions = ["tests", "lint", "typecheck"]

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
REPORT_OUT = ROOT / "reports" / "out"
DEFAULT_MODELS = ("llama3.2:3b-instruct-q8_0", "qwen2.5:7b-instruct", "phi3.5:mini")


# --------------------------------------------------------------------------- helpers


def _install(session: nox.Session, *extras: str) -> None:
    """Install the project (editable) with ``extras``; nothing when running without a venv."""
    if session.venv_backend == "none":
        session.log("install: skipped (no virtualenv: using the current interpreter)")
        return
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


def _setting(
    session: nox.Session, name: str, value_from_posargs: str | None, env_var: str, default: str
) -> str:
    """Resolve one setting (posargs > environment > default) and log where it came from."""
    if value_from_posargs is not None:
        value, source = value_from_posargs, "posargs"
    elif os.environ.get(env_var):
        value, source = os.environ[env_var], f"env {env_var}"
    else:
        value, source = default, "default"
    session.log(f"setting {name} = {value}  ({source})")
    return value


def _pop_flag(args: list[str], flag: str) -> bool:
    """Remove ``flag`` from ``args``; True when it was there."""
    if flag in args:
        args.remove(flag)
        return True
    return False


def _pop_option(args: list[str], option: str) -> str | None:
    """Remove ``option VALUE`` / ``option=VALUE`` from ``args``; the value or None."""
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith(option + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def _results_dir(session: nox.Session, args: list[str], label: str) -> Path:
    """``--out`` from posargs, else ``$BENCH_OUT``, else ``results/<label>-<timestamp>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = _setting(
        session, "out", _pop_option(args, "--out"), "BENCH_OUT", str(RESULTS / f"{label}-{stamp}")
    )
    return Path(out)


def _link_latest(session: nox.Session, out: Path, name: str = "latest") -> None:
    """Point ``results/<name>`` at ``out`` (a symlink; a copy where symlinks are not allowed)."""
    link = RESULTS / name
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    try:
        link.symlink_to(out.resolve(), target_is_directory=True)
    except OSError:
        shutil.copytree(out, link)
    session.log(f"results: {out}  (also {link})")


def _bench_run(
    session: nox.Session, *, live: bool, label: str, args: list[str] | None = None
) -> Path:
    args = list(session.posargs) if args is None else args
    full = _pop_flag(args, "--full")
    quick = not full and _setting(
        session, "quick", None, "BENCH_QUICK", "1" if not live else "0"
    ) not in ("0", "false", "no")
    session.log(
        f"setting mode = {'live' if live else 'mocked'}  ({'session' if live else 'default'})"
    )
    if full:
        session.log("setting quick = 0  (posargs --full)")
    out = _results_dir(session, args, label)
    cmd = ["samplemind-bench", "run", "--out", str(out)]
    cmd += ["--quick"] if quick else []
    cmd += ["--live"] if live else []
    session.run(*cmd, *args)
    _link_latest(session, out)
    return out


def _docker(session: nox.Session, *args: str) -> None:
    """Run ``docker compose ARGS`` or fail with a clear message when no engine is reachable."""
    if shutil.which("docker") is None:
        session.error("docker is not installed: install Docker Engine (or Docker Desktop) first.")
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        why = (probe.stderr or probe.stdout).strip().splitlines()
        session.error(
            "no Docker engine is reachable (`docker info` failed"
            + (f": {why[-1]}" if why else "")
            + "). Start the Docker daemon or set DOCKER_HOST; the mocked sessions "
            "(tests, bench, report) need no Docker"
        )
    session.run("docker", "compose", *args, external=True)


# --------------------------------------------------------------------------- quality


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (xdist), benchmarks disabled; posargs go to pytest.

    ``-- --fast``: the edit loop's tier, every test not marked ``slow`` (``-m "not slow"``).
    """
    _install(session, "dev")
    args = list(session.posargs)
    fast = _pop_flag(args, "--fast")
    tier_name = "fast: -m 'not slow'" if fast else "full"
    session.log(f"setting tier = {tier_name}  ({'posargs --fast' if fast else 'default'})")
    workers = _setting(session, "workers", None, "PYTEST_WORKERS", "auto")
    paths = [] if any(not a.startswith("-") for a in args) else ["tests", "bench"]
    tier = ["-m", "not slow"] if fast else []
    session.run("pytest", "-n", workers, "--benchmark-disable", *tier, *paths, *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check; actionlint on the workflows, shellcheck on the CI scripts."""
    _install(session, "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("actionlint")  # finds .github/workflows; checks run: scripts with shellcheck
    session.run("shellcheck", ".ci/run", *map(str, Path(".github/scripts").glob("*.sh")))


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict: the package and the harness (pyproject config), then the studies."""
    _install(session, "dev")
    session.run("mypy")
    session.run("mypy", "--strict", "studies", *session.posargs)


# --------------------------------------------------------------------------- measurement


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Mocked benchmarks (quick; ``-- --full`` for the full grid) into results/<stamp>."""
    _install(session, "harness")
    _bench_run(session, live=False, label="mocked")


@nox.session(default=False)
def bench_live(session: nox.Session) -> None:
    """Benchmarks against real local services (redis-server, cluster, emulator)."""
    _install(session, "harness")
    _bench_run(session, live=True, label="live")


@nox.session(default=False)
def profile(session: nox.Session) -> None:
    """memray / py-spy profiles (posargs go to `samplemind-bench profile`)."""
    _install(session, "harness", "profile")
    args = list(session.posargs)
    out = _setting(session, "out", _pop_option(args, "--out"), "PROFILE_OUT", "profiles")
    session.run("samplemind-bench", "profile", "--out", out, *args)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """MAIN JOB: mocked benchmarks (quick unless ``-- --full``) and the report in reports/out/.

    ``-- --results DIR`` builds the report from an existing results folder instead (CI).
    """
    _install(session, "harness")
    args = list(session.posargs)
    given = _pop_option(args, "--results")
    if given is not None:
        session.log(f"setting results = {given}  (posargs --results: no benchmark run)")
        out = Path(given)
    else:
        out = _bench_run(session, live=False, label="report", args=args)
    dest = _setting(session, "report_out", None, "REPORT_OUT", str(REPORT_OUT))
    session.run("samplemind-bench", "report", str(out), "--out", dest)
    session.log(f"report: {Path(dest).resolve() / 'index.html'}")


@nox.session(default=False)
def gate(session: nox.Session) -> None:
    """Regression gate. No posargs: the working tree against ``main`` (BASE_REF), interleaved."""
    _install(session, "harness")
    args = list(session.posargs)
    if not args:
        ref = _setting(session, "baseline_ref", None, "BASE_REF", "main")
        out = RESULTS / "gate"
        args = [
            "--baseline-ref", ref, "--out", str(out / "runs"),
            "--json", str(out / "verdicts.json"), "--markdown", str(out / "summary.md"),
        ]  # fmt: skip
    else:
        session.log("setting gate arguments = posargs")
    session.run("samplemind-bench", "gate", *args)


@nox.session(default=False)
def gate_study(session: nox.Session) -> None:
    """The gate's own quality: A/A false alarms, power, pytest-benchmark's min:5 % (~25 min).

    Defaults = the study's defaults: 100 comparisons of ``[gate] rounds`` (bench/gate/default.toml)
    paired rounds each, slowdowns 0-10 %, stopping after 26 minutes at the latest.
    """
    _install(session, "harness")
    args = list(session.posargs)
    out = _setting(
        session,
        "out",
        _pop_option(args, "--out"),
        "GATE_STUDY_OUT",
        str(RESULTS / "gate_study.json"),
    )
    sets = _setting(session, "sets", _pop_option(args, "--sets"), "GATE_STUDY_SETS", "100")
    rounds = _setting(
        session, "rounds", _pop_option(args, "--rounds"), "GATE_STUDY_ROUNDS", _gate_rounds()
    )
    minutes = _setting(
        session, "max_minutes", _pop_option(args, "--max-minutes"), "GATE_STUDY_MINUTES", "26"
    )
    session.run(
        "python", "-m", "studies.gate_study", "--out", out, "--sets", sets,
        "--rounds", rounds, "--max-minutes", minutes, *args,
    )  # fmt: skip


@nox.session(default=False)
def gate_e2e(session: nox.Session) -> None:
    """The real gate path: A/A runs and runs with an injected slowdown, judged by the gate (~45 min).

    Posargs go to ``python -m studies.gate_e2e`` (``--aa``, ``--ab``, ``--units``, ``--rounds``).
    """
    _install(session, "harness")
    args = list(session.posargs)
    out = _setting(
        session, "out", _pop_option(args, "--out"), "GATE_E2E_OUT", str(RESULTS / "gate_e2e.json")
    )
    session.run("python", "-m", "studies.gate_e2e", "--out", out, *args)


STUDIES: dict[str, str] = {
    "instructions": "instructions_study",  # aa | inject | gate (the A/A spreads file, detection)
    "history_detectors": "history_detectors",
    "history_noise": "history_noise",
    "hits_vs_raw": "hits_vs_raw",
    "emulator_throughput": "emulator_throughput",
    "gate_study": "gate_study",
    "gate_e2e": "gate_e2e",
    "gate_between_runs": "gate_between_runs",  # calibrate | evaluate | table: the two-folder gate's floor
    "import_graph": "import_graph",
    "cache_storm": "cache_storm",  # cancellation storm, CLIENT PAUSE, a node down, a full Redis
    "httpx_burst": "httpx_burst",  # 1,000-5,000 concurrent calls per transport, faults
    "httpx_burst_repro": "httpx_burst_repro",  # the httpcore lock-up with httpx alone
    "stream_first_chunk": "stream_first_chunk",  # the layer vs a raw aiohttp read
    "stream_single_flight": "stream_single_flight",  # identical streams in 1 and 4 processes
    "stream_profile": "stream_profile",  # where a chunk's time goes
    "stream_fault_cpu": "stream_fault_cpu",  # CPU of a 429 mid-stream
    "stream_wire_cost": "stream_wire_cost",  # open_stream vs raw aiohttp
    "layer_cost_order": "layer_cost_order",  # paired raw/layer reads: start order, A/A, no cache
    "stream_clumps": "stream_clumps",  # per-chunk probes: socket, producer, caller; loop lag, GC
    "httpx_stream_floor": "httpx_stream_floor",  # plain httpx, its pool guarded, the layer
}
"""``nox -s study -- NAME ARGS`` → ``python -m studies.<module> ARGS`` (studies/ is not installed)."""


@nox.session(default=False)
def study(session: nox.Session) -> None:
    """One of the studies that calibrate the tools: ``nox -s study -- NAME [ARGS]``.

    NAME is one of :data:`STUDIES` (``nox -s study`` lists them); ARGS go to the study.
    """
    args = list(session.posargs)
    if not args or args[0] not in STUDIES:
        session.error(f"nox -s study -- NAME [ARGS]: NAME is one of {', '.join(STUDIES)}")
    name, *rest = args
    _install(session, "dev")
    session.log(f"setting study = {name}  (posargs)")
    session.run("python", "-m", f"studies.{STUDIES[name]}", *rest, env={"PYTHONPATH": str(ROOT)})


def _gate_rounds() -> str:
    """``[gate] rounds`` of bench/gate/default.toml: the study measures the gate's own default."""
    import tomllib

    doc = tomllib.loads((ROOT / "bench" / "gate" / "default.toml").read_text(encoding="utf-8"))
    return str(doc["gate"]["rounds"])


# --------------------------------------------------------------------------- services


@nox.session(venv_backend="none", default=False)
def up(session: nox.Session) -> None:
    """Start the compose services (redis, ollama, ...) in the background."""
    _docker(session, "up", "-d", "--wait", *session.posargs)


@nox.session(venv_backend="none", default=False)
def down(session: nox.Session) -> None:
    """Stop and remove the compose services."""
    _docker(session, "down", *session.posargs)


@nox.session(venv_backend="none", default=False)
def ps(session: nox.Session) -> None:
    """Show the compose services."""
    _docker(session, "ps", *session.posargs)


@nox.session(venv_backend="none", default=False)
def logs(session: nox.Session) -> None:
    """Follow the compose services' logs (posargs: service names)."""
    _docker(session, "logs", "--tail", "200", *session.posargs)


@nox.session(venv_backend="none", default=False)
def models(session: nox.Session) -> None:
    """List the models the ollama service has."""
    _docker(session, "exec", "ollama", "ollama", "list")


@nox.session(venv_backend="none", default=False)
def pull_models(session: nox.Session) -> None:
    """Pull models into the ollama service (posargs, else $OLLAMA_MODELS, else the default)."""
    given = " ".join(session.posargs) if session.posargs else None
    names = _setting(session, "models", given, "OLLAMA_MODELS", " ".join(DEFAULT_MODELS))
    for name in names.replace(",", " ").split():
        _docker(session, "exec", "ollama", "ollama", "pull", name)
