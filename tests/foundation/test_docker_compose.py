"""docker-compose.yml cannot run here; check what can be checked: it parses, its commands
exist, and every variable it passes to the app is one the settings read."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ["web", "worker-gpu", "worker-cpu"]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def settings_env_names() -> set[str]:
    """Names passed to `env(...)`, `env.str(...)`, `env.bool(...)` ... in backend/settings.py."""
    tree = ast.parse((ROOT / "backend" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        is_env = (isinstance(func, ast.Name) and func.id == "env") or (
            isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env")
        if is_env and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
    return names


def test_it_parses_and_has_the_services():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "web", "worker-gpu", "worker-cpu"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_every_variable_passed_to_the_app_is_read_by_the_settings():
    read = settings_env_names()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "MEDIA_ROOT"} <= read
    for name in APP_SERVICES:
        passed = set(compose()["services"][name]["environment"])
        assert passed <= read, f"{name} passes variables the app never reads: {passed - read}"


def test_the_app_is_told_where_its_services_are():
    env = compose()["services"]["web"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["DEBUG"] == "false"


def test_worker_queues_and_commands_exist():
    from backend.celery import app

    queues = {queue.name for queue in app.conf.task_queues}
    services = compose()["services"]
    for name, queue in (("worker-gpu", "gpu"), ("worker-cpu", "cpu")):
        argv = shlex.split(services[name]["command"])
        assert argv[:3] == ["celery", "-A", "backend"]
        assert argv[argv.index("-Q") + 1] == queue and queue in queues
        assert importlib.import_module(argv[2]).celery_app is app
    gpu = services["worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert any(volume.endswith(":ro") for volume in gpu["volumes"]), "checkpoint must be mounted read-only"


def test_web_command_targets_the_asgi_app():
    command = compose()["services"]["web"]["command"]
    target = re.search(r"uvicorn ([\w.]+:\w+)", command).group(1)
    import uvicorn  # noqa: F401  (the server the image runs is installed)

    module, attribute = target.split(":")
    assert getattr(importlib.import_module(module), attribute) is not None
    assert "manage.py migrate" in command


def test_env_example_names_what_compose_requires():
    example = (ROOT / ".env.example").read_text()
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required and all(f"{name}=" in example for name in required)
