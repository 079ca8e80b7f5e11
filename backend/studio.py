"""The page that hosts the frontend.

`/` serves the built single-page app (frontend/dist/index.html, whose assets live under
STATIC_URL and are served by WhiteNoise after collectstatic) to logged-in users. Without a
build it falls back to a plain project list, so the backend works without Node.
"""

from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie

from backend.projects.access import projects_visible_to


@lru_cache(maxsize=4)
def _index_html(path: Path, mtime: float) -> str:
    return path.read_text(encoding="utf-8")


def frontend_index() -> str | None:
    path = Path(settings.FRONTEND_DIST) / "index.html"
    try:
        return _index_html(path, path.stat().st_mtime)
    except FileNotFoundError:
        return None


@never_cache
@ensure_csrf_cookie  # the app sends Django's csrftoken cookie back as X-CSRFToken
@login_required
def home(request):
    index = frontend_index()
    if index is not None:
        return HttpResponse(index, content_type="text/html; charset=utf-8")
    return render(request, "studio/home.html", {"projects": projects_visible_to(request.user)})
