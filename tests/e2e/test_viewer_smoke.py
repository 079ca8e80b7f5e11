"""Browser smoke test of the reading-room viewer against the production build.

How the app is started (works the same in both `make test` runs):

* The server is a real daphne process (HTTP + WebSocket) with ``DJANGO_SETTINGS_MODULE=tests.settings``.
  A subprocess cannot see pytest-django's test database in the embedded run (in-memory SQLite),
  so the test gives the server its own temporary SQLite *file* database (``DATABASE_URL=sqlite:////tmp/…``),
  media and static folders, migrates it and fills it with ``seed_demo`` (the demo project, users and the
  synthetic phantom scans) — in the services run too, so there is one code path; ``REDIS_URL`` is
  removed from the server's environment (in-memory channel layer, in-process tasks).
  pytest-django's own database is not touched.
* The frontend is the production build in ``frontend/dist`` (built here with ``npm run build`` when
  it is missing or older than its sources), collected into the server's STATIC_ROOT with
  ``collectstatic`` and served by WhiteNoise, exactly as in production.
* The browser is the system Chromium (``/usr/bin/chromium``) driven by Playwright's Python API with
  software WebGL (SwiftShader); Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "annotator1", "demo-annotator1-pass"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _newest_mtime(paths: list[Path]) -> float:
    newest = 0.0
    for base in paths:
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def _ensure_frontend_build() -> None:
    index = FRONTEND / "dist" / "index.html"
    sources = [FRONTEND / "src", FRONTEND / "index.html", FRONTEND / "vite.config.ts", FRONTEND / "package-lock.json"]
    if index.exists() and index.stat().st_mtime >= _newest_mtime(sources):
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed to build the frontend (Node 20); run `make frontend`"
    if not (FRONTEND / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
    subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True)


def _run(args: list[str], env: dict) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory):
    _ensure_frontend_build()
    base = tmp_path_factory.mktemp("e2e")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DEBUG")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{base / 'db.sqlite3'}",
        "DATA_DIR": str(base / "data"),
        "MEDIA_ROOT": str(base / "media"),
        "STATIC_ROOT": str(base / "static"),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_SSL_REDIRECT": "false",
        "PYTHONUNBUFFERED": "1",
    })
    _run(["migrate", "--noinput", "-v0"], env)
    _run(["seed_demo"], env)
    _run(["collectstatic", "--noinput", "-v0"], env)
    assert (base / "static" / "index.html").exists(), "collectstatic did not pick up frontend/dist"
    port = _free_port()
    log = open(base / "daphne.log", "w+")
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "backend.asgi:application"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
            break
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"daphne did not start:\n{log.read()}")
            time.sleep(0.2)
    yield url
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def _pixel_spread(png: bytes) -> tuple[float, int]:
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("RGB")
    grey = image.convert("L")
    colours = image.getcolors(maxcolors=1 << 20) or []
    return ImageStat.Stat(grey).stddev[0], len(colours)


def test_viewer_renders_pet(studio_server):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(f"{studio_server}/", wait_until="domcontentloaded")
            assert "/accounts/login/" in page.url
            page.fill("#id_username", USER)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("[data-project]", timeout=30_000)
            page.click("[data-project]")
            page.wait_for_selector("[data-open-scan]", timeout=30_000)
            page.locator("tr", has_text="Phantom A").locator("[data-open-scan]").click()
            page.wait_for_function("() => window.__studio && (window.__studio.ready === true || window.__studio.error)",
                                   timeout=120_000)
            state = page.evaluate("() => ({ready: window.__studio.ready, error: window.__studio.error || null,"
                                  " display: window.__studio.display})")
            assert state["ready"], f"viewer failed: {state['error']}; browser errors: {errors}"
            assert state["display"]["voiRange"] == {"lower": 0, "upper": 10}
            for viewport in ("axial", "coronal", "sagittal", "mip"):
                png = page.locator(f"#vp-{viewport}").screenshot()
                spread, colours = _pixel_spread(png)
                assert spread > 5 and colours > 20, (
                    f"{viewport} view looks blank (stddev {spread:.1f}, {colours} colours); browser errors: {errors}")
            if os.environ.get("E2E_ARTIFACTS"):
                Path(os.environ["E2E_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(os.environ["E2E_ARTIFACTS"]) / "viewer.png"))
                (Path(os.environ["E2E_ARTIFACTS"]) / "console.txt").write_text("\n".join(errors))
            # the SUV under the cursor is read from the decoded volume
            box = page.locator("#vp-coronal").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            cursor = page.locator("#cursor").inner_text()
            assert "SUV" in cursor or "outside" in cursor, cursor
        finally:
            browser.close()
    page_errors = [e for e in errors if e.startswith("pageerror")]
    assert not page_errors, page_errors
