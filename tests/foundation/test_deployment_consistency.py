"""The deployment files agree with each other and with the code: one ASGI server everywhere, an image
Node that the frontend's engines accept, and compose commands that exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def web_steps() -> list[list[str]]:
    """The web service's `sh -c "a && b && c"` command as a list of argv."""
    command = compose()["services"]["web"]["command"]
    inner = shlex.split(command)[-1]
    return [shlex.split(step) for step in inner.split("&&")]


def docker_cmd() -> list[str]:
    match = re.search(r"^CMD (\[.*?\])\s*$", dockerfile().replace("\\\n", ""), re.MULTILINE | re.DOTALL)
    assert match, "the Dockerfile has no exec-form CMD"
    return json.loads(match.group(1))


# --- one ASGI server --------------------------------------------------------------------------------

SERVERS = ("uvicorn", "daphne", "hypercorn", "gunicorn", "granian")


def test_one_asgi_server_everywhere():
    compose_server = web_steps()[-1][0]
    image_server = docker_cmd()[0]
    readme = (ROOT / "README.md").read_text()
    production = readme[readme.index("**Production.**"):readme.index("## Deploying")]
    named = {server for server in SERVERS if server in production}
    assert compose_server == image_server and named == {compose_server}, (compose_server, image_server, named)
    # Both serve the same application object.
    assert web_steps()[-1][1] == docker_cmd()[1] == "backend.asgi:application"
    for text in (dockerfile(), (ROOT / "docker-compose.yml").read_text(), production):
        assert not {server for server in SERVERS if server in text} - {compose_server}


def test_server_options_exist():
    from uvicorn.main import main

    options = {opt for param in main.params for opt in param.opts}
    for argv in (web_steps()[-1], docker_cmd()):
        flags = {arg.split("=")[0] for arg in argv[2:] if arg.startswith("--")}
        assert flags <= options, flags - options


# --- Node of the image against the engines ----------------------------------------------------------

def _version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def satisfies(version: tuple[int, int, int], spec: str) -> bool:
    """npm semver ranges as used in engines: alternatives by ||, comparators >=, >, <, <=, =, ^, ~, x, *."""
    for alternative in spec.split("||"):
        tokens = re.findall(r"(>=|<=|>|<|=|\^|~)?\s*([0-9x*][0-9.x*]*)", alternative.strip())
        if all(_compare(version, op, text) for op, text in tokens):
            return True
    return False


def _compare(version: tuple[int, int, int], op: str, text: str) -> bool:
    if text in ("*", "x"):
        return True
    bound = _version(text.replace("x", "0"))
    if op == "^":
        major = bound[0]
        return version >= bound and version[0] == major if major else version[:2] == bound[:2] and version >= bound
    if op == "~":
        return version >= bound and version[:2] == bound[:2]
    return {">=": version >= bound, ">": version > bound, "<": version < bound, "<=": version <= bound,
            "=": version == bound, "": version[:len(text.split("."))] == bound[:len(text.split("."))]}[op]


def image_node_version() -> tuple[int, int, int]:
    match = re.search(r"^FROM node:(\d+)\.(\d+)(?:\.(\d+))?[-\w]*", dockerfile(), re.MULTILINE)
    assert match, "the image's Node must be pinned to at least major.minor (FROM node:22.14-...)"
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def test_the_range_check_itself():
    assert satisfies((22, 14, 0), "^20.19.0 || >=22.12.0") and not satisfies((22, 11, 0), "^20.19.0 || >=22.12.0")
    assert satisfies((20, 19, 1), "^20.19.0 || >=22.12.0") and not satisfies((21, 0, 0), "^20.19.0 || >=22.12.0")
    assert satisfies((18, 19, 0), ">= 0.10") and not satisfies((18, 19, 0), ">=22.13")


def test_the_image_node_satisfies_the_frontend_engines():
    package = json.loads((ROOT / "frontend" / "package.json").read_text())
    engines = package.get("engines", {}).get("node")
    assert engines, "frontend/package.json must say which Node it needs (engines.node)"
    node = image_node_version()
    assert satisfies(node, engines), (node, engines)
    # And every locked package that says which Node it runs on (Vite 7, dcmjs...).
    lock = json.loads((ROOT / "frontend" / "package-lock.json").read_text())
    refused = {name: meta["engines"]["node"] for name, meta in lock["packages"].items()
               if isinstance(meta.get("engines"), dict) and "node" in meta["engines"] and not meta.get("optional")
               and not satisfies(node, meta["engines"]["node"])}
    assert not refused, refused
    # The engines are no looser than what the locked packages need.
    assert satisfies(_version(engines), lock["packages"]["node_modules/vite"]["engines"]["node"])


def test_debian_node_is_not_used():
    assert not re.search(r"apt-get install[^\n]*\bnodejs\b", dockerfile())


# --- compose commands against the code ---------------------------------------------------------------

def test_web_start_up_commands_exist():
    from django.core.management import get_commands

    commands = get_commands()
    steps = web_steps()
    for argv in steps[:-1]:
        assert argv[:2] == ["python", "manage.py"] and argv[2] in commands, argv
    assert [argv[2] for argv in steps[:-1]] == ["migrate", "recover_stale"]  # schema first, then recovery


def test_the_beat_schedule_runs_on_a_worker_that_registers_its_tasks():
    import importlib

    from django.conf import settings

    from backend.celery import app

    argv = shlex.split(compose()["services"]["worker-cpu"]["command"])
    assert "-B" in argv or "--beat" in argv
    included = argv[argv.index("--include") + 1].split(",")
    for module in included:
        importlib.import_module(module)
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]
        assert entry["task"].rsplit(".", 1)[0] in included
        assert entry["options"]["queue"] == argv[argv.index("-Q") + 1]
