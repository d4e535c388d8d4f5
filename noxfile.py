"""Developer tasks. `scripts/test` bootstraps nox and runs the default sessions.

Sessions: tests (the whole suite, real provider included), browser, lint, typecheck, docs;
bench and mutation on request.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "docs", "tests", "browser"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
PROVIDER = ROOT / "tests" / "provider"


def install_test_provider(session: nox.Session) -> None:
    """`npm ci` the test OpenID provider when its lock file changed (or it is missing)."""
    lock = PROVIDER / "package-lock.json"
    marker = PROVIDER / "node_modules" / ".vandamme-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text() == digest:
        session.log("oidc-provider is installed and current")
        return
    with session.chdir(PROVIDER):
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
    marker.write_text(digest)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: unit tests and integration tests against real loopback servers."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "tests"))
    install_test_provider(session)
    # The browser test has its own session (it needs Playwright and Chromium).
    session.run("pytest", "--ignore=tests/browser", *session.posargs)


def ensure_chromium(session: nox.Session) -> None:
    """Debian's Chromium, installed with apt-get when missing and we are root."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        session.error("Chromium is needed: install it (Debian/Ubuntu: apt-get install chromium)")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run("apt-get", "install", "-y", "-qq", "chromium", external=True, env=env)


@nox.session
def browser(session: nox.Session) -> None:
    """The login in a real headless Chromium (Playwright driving Debian's chromium)."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "browser"))
    install_test_provider(session)
    ensure_chromium(session)
    session.run("pytest", "tests/browser", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, examples and benchmarks."""
    session.install(
        "-e", ".", *nox.project.dependency_groups(PYPROJECT, "typing", "bench", "browser")
    )
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site: the README as the guide and the API reference from the
    docstrings (mkdocs-material + mkdocstrings). Strict: a broken link or reference fails."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "docs"))
    site = Path(session.create_tmp()) / "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"}
    )
    session.log(f"documentation built in {site}")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (numbers printed, not asserted): hot path, refresh storm, import time."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "tests", "bench"))
    # Byte-compile everything first: import-time numbers must not include compiling (uv
    # installs without .pyc files, and PYTHONDONTWRITEBYTECODE may be set).
    session.run("python", "-m", "compileall", "-q", "-j", "0", session.virtualenv.location, ".")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def mutation(session: nox.Session) -> None:
    """mutmut over the modules that carry the promises (not a default session). The last
    line printed is `mutation score: KILLED/TOTAL killed (P%)`."""
    # pytest-timeout turns a mutant that makes a test wait forever (a lock never released, a
    # version never bumped) into a failing test within seconds instead of mutmut's long timeout.
    session.install(
        "-e",
        ".",
        *nox.project.dependency_groups(PYPROJECT, "tests"),
        "mutmut>=3.3",
        "pytest-timeout>=2.3",
    )
    session.run("mutmut", "run", *session.posargs, success_codes=[0, 1])
    session.run("python", "scripts/mutation_score.py")
