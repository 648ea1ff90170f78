"""What build is running: the version and the git revision, for ``bridge --version`` and the
``bridge_build_info`` metric (both read them here, so they always agree).

The revision comes from, in order: the ``BRIDGE_GIT_REVISION`` environment variable (an image build
sets it from a build argument), the git checkout the package runs from (an editable install), or
``unknown``. Asking git never fails the caller: outside a checkout, or without git, it is ``unknown``.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from bridge import __version__

REVISION_ENV = "BRIDGE_GIT_REVISION"
UNKNOWN = "unknown"
_CHECKOUT = Path(__file__).resolve().parents[2]  # the folder above the package


def version() -> str:
    return __version__


@cache
def revision() -> str:
    """A short commit id (``-dirty`` when the checkout has changes), or ``unknown``."""
    given = os.environ.get(REVISION_ENV, "").strip()  # the build's own value, not configuration
    return given or _git_revision() or UNKNOWN


def _git_revision() -> str | None:
    if not (_CHECKOUT / ".git").exists():  # a file in a worktree, a folder in a clone
        return None
    try:
        head = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "bridge")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=_CHECKOUT, capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


def describe() -> str:
    """``bridge --version``'s line."""
    return f"workflow-bridge {version()} (revision {revision()})"
