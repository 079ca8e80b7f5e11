"""The page that hosts the frontend (a placeholder until the viewer lands)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from backend.projects.access import projects_visible_to


@login_required
def home(request):
    return render(request, "studio/home.html", {"projects": projects_visible_to(request.user)})
