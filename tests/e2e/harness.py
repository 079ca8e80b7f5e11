"""Shared harness of the browser tests (tests/e2e) and the browser benchmark (bench/bench_viewer.py).

How the app is started (the same in both `make test` runs and in the benchmark):

* The server is a real daphne process (HTTP + WebSocket) with ``DJANGO_SETTINGS_MODULE=tests.settings``.
  A subprocess cannot see pytest-django's test database in the embedded run (in-memory SQLite),
  so the server gets its own temporary SQLite *file* database (``DATABASE_URL=sqlite:////tmp/…``),
  media and static folders, migrated and filled with ``seed_demo`` (the demo project, users and the
  synthetic phantom scans); ``REDIS_URL`` is removed from the server's environment (in-memory channel
  layer, in-process tasks). pytest-django's own database is not touched.
* The frontend is the production build in ``frontend/dist`` (built here with ``npm run build`` when
  it is missing or older than its sources), collected into the server's STATIC_ROOT with
  ``collectstatic`` and served by WhiteNoise, exactly as in production.
* The browser is the system Chromium (``/usr/bin/chromium``) driven by Playwright's Python API with
  software WebGL (SwiftShader, flags from shared/VIEWER_NOTES.md); Playwright's own browser downloads
  are never used.
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
from functools import lru_cache
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]
# seed_demo's users (username -> password)
PASSWORDS = {name: f"demo-{name}-pass" for name in ("manager", "annotator1", "annotator2", "reviewer")}
PHANTOM_A = "Phantom A, FDG (synthetic)"
# seed_demo generates Phantom A with these arguments (backend/projects/management/commands/seed_demo.py)
PHANTOM_A_ARGS = {"seed": 2026, "n_lesions": 6, "shape": (220, 128, 128), "spacing": (4.0, 4.0, 4.0)}
VIEWPORT = {"width": 1400, "height": 900}


# ---------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _newest_mtime(paths: list[Path]) -> float:
    newest = 0.0
    for base in paths:
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def ensure_frontend_build() -> None:
    index = FRONTEND / "dist" / "index.html"
    sources = [FRONTEND / "src", FRONTEND / "index.html", FRONTEND / "vite.config.ts", FRONTEND / "package-lock.json"]
    if index.exists() and index.stat().st_mtime >= _newest_mtime(sources):
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed to build the frontend (Node 20); run `make frontend`"
    if not (FRONTEND / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
    subprocess.run([npm, "run", "build"], cwd=FRONTEND, check=True)


class StudioServer:
    """daphne serving the app against its own temporary SQLite database, seeded with seed_demo."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DEBUG")}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"sqlite:///{self.base / 'db.sqlite3'}",
            "DATA_DIR": str(self.base / "data"),
            "MEDIA_ROOT": str(self.base / "media"),
            "STATIC_ROOT": str(self.base / "static"),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_SSL_REDIRECT": "false",
            "PYTHONUNBUFFERED": "1",
        })
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.log_path = self.base / "daphne.log"

    def manage(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare(self) -> None:
        ensure_frontend_build()
        self.base.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput", "-v0")
        self.manage("seed_demo")
        self.manage("collectstatic", "--noinput", "-v0")
        assert (self.base / "static" / "index.html").exists(), "collectstatic did not pick up frontend/dist"

    def start(self) -> str:
        port = free_port()
        self._log = open(self.log_path, "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "backend.asgi:application"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2)
                return self.url
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start:\n{self.log()}") from None
                time.sleep(0.2)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()
        self.process = None


# ---------------------------------------------------------------------------------------------- REST


class Api:
    """REST client with token authentication (POST /api/auth/token/)."""

    def __init__(self, url: str, username: str) -> None:
        self.url = url
        self.username = username
        self.http = requests.Session()
        r = self.http.post(f"{url}/api/auth/token/", data={"username": username, "password": PASSWORDS[username]},
                           timeout=30)
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Token {r.json()['token']}"

    def request(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201), **kwargs):
        r = self.http.request(method, f"{self.url}{path}", timeout=60, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in expected, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, json=None, **kwargs):
        return self.request("POST", path, json=json, **kwargs).json()

    def patch(self, path: str, json=None, **kwargs):
        return self.request("PATCH", path, json=json, **kwargs).json()

    def list(self, path: str) -> list:
        page = self.get(path)
        if isinstance(page, list):
            return page
        out = list(page["results"])
        while page.get("next"):
            page = self.http.get(page["next"], timeout=60).json()
            out += page["results"]
        return out

    def project(self, name: str = "Demo whole-body FDG PET") -> dict:
        return next(p for p in self.list("/api/projects/") if p["name"] == name)

    def scan(self, project_id: int, name: str) -> dict:
        return next(s for s in self.list(f"/api/projects/{project_id}/scans/") if s["name"] == name)

    def label(self, project_id: int, name: str) -> dict:
        return next(lab for lab in self.list(f"/api/projects/{project_id}/labels/") if lab["name"] == name)


# ---------------------------------------------------------------------------------------------- browser


def launch(playwright):
    assert Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}"
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class Reader:
    """One signed-in browser context and its page, collecting page errors."""

    def __init__(self, browser, url: str, username: str) -> None:
        self.url = url
        self.username = username
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("dialog", lambda d: d.accept())

    def login(self) -> None:
        page = self.page
        page.goto(f"{self.url}/", wait_until="domcontentloaded")
        assert "/accounts/login/" in page.url, page.url
        page.fill("#id_username", self.username)
        page.fill("#id_password", PASSWORDS[self.username])
        page.click("button[type=submit]")
        page.wait_for_selector("[data-project]", timeout=30_000)

    def open_worklist(self) -> None:
        self.page.click("[data-project]")
        self.page.wait_for_selector("[data-open-scan]", timeout=30_000)

    def open_scan(self, name: str = PHANTOM_A, timeout_ms: int = 120_000) -> None:
        self.page.locator("tr", has_text=name).locator("[data-open-scan]").click()
        self.wait_ready(timeout_ms)

    def wait_ready(self, timeout_ms: int = 120_000) -> None:
        self.page.wait_for_function(
            "() => window.__studio && (window.__studio.ready === true || window.__studio.error)", timeout=timeout_ms)
        state = self.page.evaluate("() => ({ready: window.__studio.ready, error: window.__studio.error || null})")
        assert state["ready"], f"viewer failed: {state['error']}; browser errors: {self.errors}"
        self.page.wait_for_function("() => window.__studio.connection === 'open'", timeout=30_000)

    def studio(self, expression: str = "s"):
        return self.page.evaluate(f"() => {{ const s = window.__studio; return {expression}; }}")

    def go_to_voxel(self, index) -> None:
        self.page.evaluate("(v) => window.__studio.viewer.goToVoxel(v)", list(index))
        self.frames(2)

    def frames(self, n: int = 2) -> None:
        self.page.evaluate("(n) => new Promise((ok) => { const f = (k) => k ? requestAnimationFrame(() => f(k - 1)) : ok(); f(n); })", n)

    def voxel_point(self, viewport: str, index) -> tuple[float, float]:
        """Page coordinates of a voxel's centre on a viewport."""
        x, y = self.page.evaluate("([id, v]) => window.__studio.viewer.voxelToCanvas(id, v)", [viewport, list(index)])
        box = self.page.locator(f"#vp-{viewport}").bounding_box()
        assert 0 <= x < box["width"] and 0 <= y < box["height"], (x, y, box)
        return box["x"] + x, box["y"] + y

    def viewport_png(self, viewport: str) -> tuple[bytes, dict]:
        locator = self.page.locator(f"#vp-{viewport}")
        return locator.screenshot(), locator.bounding_box()

    def close(self) -> None:
        self.context.close()


# ---------------------------------------------------------------------------------------------- pixels


def overlay_pixels(png: bytes, rgb: tuple[int, int, int], centre: tuple[float, float] | None = None,
                   radius: float = 40.0) -> int:
    """Pixels tinted by an overlay colour: hue close to `rgb` and clearly not grey.

    The viewer's default PET colormap is inverted grey (every pixel grey), the crosshair is cyan, so a
    pixel counts when its chroma is large and its colour direction is the label's.
    """
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32)
    h, w, _ = image.shape
    if centre is not None:
        yy, xx = np.mgrid[0:h, 0:w]
        near = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius ** 2
    else:
        near = np.ones((h, w), bool)
    chroma = image - image.mean(axis=2, keepdims=True)
    target = np.asarray(rgb, np.float32) - np.mean(rgb)
    target /= np.linalg.norm(target)
    norm = np.linalg.norm(chroma, axis=2)
    cosine = (chroma @ target) / np.maximum(norm, 1e-6)
    return int(((norm > 25) & (cosine > 0.9) & near).sum())


def hex_rgb(colour: str) -> tuple[int, int, int]:
    n = int(colour.lstrip("#"), 16)
    return (n >> 16) & 255, (n >> 8) & 255, n & 255


# ---------------------------------------------------------------------------------------------- phantom


@lru_cache(maxsize=1)
def phantom_a_lesions() -> list[dict]:
    """The lesions of the demo's Phantom A (regenerated: the phantom is deterministic from its seed)."""
    from worker.phantoms import make_phantom

    phantom = make_phantom(**PHANTOM_A_ARGS)
    return [{"index": lesion.index, "host": lesion.host, "centre": [int(round(x)) for x in lesion.centre_index],
             "diameter_mm": lesion.diameter_mm, "voxels": lesion.voxel_count, "suv_max": lesion.suv_max}
            for lesion in phantom.lesions]
