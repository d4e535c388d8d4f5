"""Developer tasks. `scripts/test` bootstraps nox and runs the default sessions.

Every session installs from the committed `uv.lock` (`uv sync --locked`), so a new upstream
release never changes what CI runs, and a lock that no longer matches `pyproject.toml` fails
loudly. Bumps are deliberate: `scripts/test -s upgrade` tries the newest versions of
everything in a scratch venv; `uv lock --upgrade-package NAME` takes one of them.

Default sessions: lint, typecheck, docs, tests on every Python we claim (tests-3.11,
tests-3.12, tests-3.13), dist (the built wheel, installed and tested) and browser. On request:
bench, mutation, upgrade.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_external_run = True
# A Python we claim but cannot find is an error naming it, never a silent skip; and no
# session downloads an interpreter: they come from the machine (pyenv, the system, ...).
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "docs", "tests", "dist", "browser"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
PROVIDER = ROOT / "tests" / "provider"
#: The Pythons we claim: exactly the trove classifiers' minor versions (a test checks).
PYTHONS = [
    c.rsplit(" :: ", 1)[1]
    for c in PYPROJECT["project"]["classifiers"]
    if c.startswith("Programming Language :: Python :: 3.")
]


def _runs(executable: str) -> bool:
    """Whether an interpreter on PATH really runs (a pyenv shim of an inactive version does
    not)."""
    result = subprocess.run([executable, "-c", ""], capture_output=True, check=False)
    return result.returncode == 0


def expose_pythons(versions: list[str]) -> None:
    """Make every claimed `pythonX.Y` that the machine has findable by nox: one that runs
    from PATH as it is, else the newest pyenv-installed one (`$PYENV_ROOT/versions/X.Y.*`),
    linked into a folder put first on PATH. A version found nowhere is left for nox to report
    as missing (an error naming it, see error_on_missing_interpreters)."""
    links = ROOT / ".nox" / "pythons"
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for version in versions:
        name = f"python{version}"
        found = shutil.which(name)
        if found and Path(found).parent != links and _runs(found):
            continue
        installed = sorted(
            pyenv_root.glob(f"versions/{version}.*/bin/{name}"),
            key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()],
        )
        if installed:
            links.mkdir(parents=True, exist_ok=True)
            (links / name).unlink(missing_ok=True)
            (links / name).symlink_to(installed[-1])
    if links.is_dir():
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ['PATH']}"


expose_pythons(PYTHONS)

#: pytest over the suite, except the browser test (its own session needs Chromium).
#: Two workers: these machines have two cores and the suite's tests are independent.
PYTEST = ["pytest", "--ignore=tests/browser", "-n", "2"]


def sync(session: nox.Session, *groups: str, project: bool = True) -> None:
    """Install exactly what `uv.lock` pins for these dependency groups (and every extra)
    into the session's venv; fail if the lock is out of date with pyproject.toml."""
    args = ["uv", "sync", "--locked", "--all-extras", "--no-default-groups"]
    args += [f"--group={group}" for group in groups]
    if not project:
        args.append("--no-install-project")
    env = {"UV_PROJECT_ENVIRONMENT": str(session.virtualenv.location)}
    session.run_install(*args, f"--python={session.virtualenv.location}", env=env)


def install_test_provider(session: nox.Session, provider: Path = PROVIDER) -> None:
    """`npm ci` the test OpenID provider when its lock file changed (or it is missing)."""
    lock = provider / "package-lock.json"
    marker = provider / "node_modules" / ".vandamme-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text() == digest:
        session.log("oidc-provider is installed and current")
        return
    with session.chdir(provider):
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
    marker.write_text(digest)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite: unit tests and integration tests against real loopback servers."""
    sync(session, "tests")
    install_test_provider(session)
    session.run(*PYTEST, *session.posargs)


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
    sync(session, "browser")
    install_test_provider(session)
    ensure_chromium(session)
    session.run("pytest", "tests/browser", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    sync(session, "lint", project=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, examples and benchmarks."""
    sync(session, "typing", "bench", "browser")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site: the README as the guide and the API reference from the
    docstrings (mkdocs-material + mkdocstrings). Strict: a broken link or reference fails."""
    sync(session, "docs")
    site = Path(session.create_tmp()) / "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"}
    )
    session.log(f"documentation built in {site}")


def wheel_problems(wheel: Path, label: str) -> list[str]:
    """What is wrong with a built wheel: a subpackage of the source tree missing, no
    `py.typed`, or tests shipped."""
    names = set(zipfile.ZipFile(wheel).namelist())
    problems = []
    for init in sorted((ROOT / "vandamme_oauth").rglob("__init__.py")):
        member = init.relative_to(ROOT).as_posix()
        if member not in names:
            problems.append(f"{label} lacks the subpackage {init.parent.relative_to(ROOT)}")
    if "vandamme_oauth/py.typed" not in names:
        problems.append(f"{label} lacks vandamme_oauth/py.typed")
    problems += [f"{label} ships {n}" for n in sorted(names) if n.startswith("tests/")]
    return problems


@nox.session
def dist(session: nox.Session) -> None:
    """Build the sdist and the wheel once, check their metadata and contents, build a wheel
    from the sdist too, then run the suite against the installed wheel (not the source)."""
    sync(session, "dist", project=False)
    out = Path(session.create_tmp()) / "dist"
    shutil.rmtree(out, ignore_errors=True)
    session.run("uv", "build", "--out-dir", str(out), str(ROOT))
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    session.run("twine", "check", "--strict", str(wheel), str(sdist))
    rebuilt = out / "from-sdist"
    session.run("uv", "build", "--wheel", "--out-dir", str(rebuilt), str(sdist))
    (second,) = rebuilt.glob("*.whl")
    problems = wheel_problems(wheel, wheel.name) + wheel_problems(second, "the sdist's wheel")
    if sorted(zipfile.ZipFile(wheel).namelist()) != sorted(zipfile.ZipFile(second).namelist()):
        problems.append("the wheel built from the sdist holds other files than the wheel")
    if problems:
        session.error("; ".join(problems))
    session.log(f"{wheel.name} and {sdist.name}: metadata, py.typed, subpackages, no tests")

    # The suite runs from a copy of the tree without the package's source, so every import
    # of vandamme_oauth (the tests', the examples', the CLI subprocesses') is the wheel's.
    sync(session, "tests", project=False)
    session.run(
        "uv",
        "pip",
        "install",
        f"--python={session.virtualenv.location}",
        "--no-deps",
        "--reinstall",
        str(wheel),
    )
    tree = Path(session.create_tmp()) / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if not name.startswith("vandamme_oauth/") and (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    install_test_provider(session, tree / "tests" / "provider")
    with session.chdir(tree):
        where = session.run(
            "python", "-c", "import vandamme_oauth; print(vandamme_oauth.__file__)", silent=True
        )
        if "site-packages" not in str(where):
            session.error(f"the tests would import vandamme_oauth from {where}, not the wheel")
        session.run(*PYTEST, *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (numbers printed, not asserted): hot path, refresh storm, import time."""
    sync(session, "tests", "bench")
    # Byte-compile everything first: import-time numbers must not include compiling (uv
    # installs without .pyc files, and PYTHONDONTWRITEBYTECODE may be set).
    session.run("python", "-m", "compileall", "-q", "-j", "0", session.virtualenv.location, ".")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """mutmut over the modules that carry the promises (not a default session). The last
    line printed is `mutation score: KILLED/TOTAL killed (P%)`."""
    # pytest-timeout turns a mutant that makes a test wait forever (a lock never released, a
    # version never bumped) into a failing test within seconds instead of mutmut's long timeout.
    sync(session, "mutation")
    session.run("mutmut", "run", *session.posargs, success_codes=[0, 1])
    session.run("python", "scripts/mutation_score.py")


def locked_versions(lock: Path) -> dict[str, str]:
    """Package name -> version, as a uv.lock pins them."""
    packages = tomllib.loads(lock.read_text())["package"]
    return {p["name"]: p.get("version", "?") for p in packages}


@nox.session(default=False)
def upgrade(session: nox.Session) -> None:
    """Resolve everything to its newest release in a scratch copy of the lock, install that
    into this session's venv, and run lint, typecheck and the suite there. Prints which
    packages moved and which steps broke; the committed uv.lock is left as it is (take the
    bump with `uv lock --upgrade`, then `scripts/test`)."""
    scratch = Path(session.create_tmp()).resolve() / "upgrade"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy2(ROOT / name, scratch / name)
    session.run("uv", "lock", "--upgrade", "--quiet", f"--directory={scratch}")
    old, new = locked_versions(ROOT / "uv.lock"), locked_versions(scratch / "uv.lock")
    moved = [
        f"{name} {old.get(name, '(new)')} -> {new.get(name, '(gone)')}"
        for name in sorted(old.keys() | new.keys())
        if name != "vandamme-oauth" and old.get(name) != new.get(name)
    ]
    requirements = scratch / "requirements.txt"
    session.run(
        "uv",
        "export",
        "--frozen",
        "--all-groups",
        "--all-extras",
        "--no-emit-project",
        "--no-hashes",
        "--quiet",
        f"--directory={scratch}",
        f"--output-file={requirements}",
    )
    session.install("-r", str(requirements))
    session.install("--no-deps", "-e", ".")
    install_test_provider(session)
    steps = {
        "ruff check": ["ruff", "check", "."],
        "ruff format": ["ruff", "format", "--check", "."],
        "mypy": ["mypy"],
        "tests": [*PYTEST, *session.posargs],
    }
    broke = []
    for label, command in steps.items():
        try:
            session.run(*command)
        except nox.command.CommandFailed:
            broke.append(label)
    print("\nupgrade: " + (f"{len(moved)} packages moved" if moved else "nothing moved"))
    for line in moved:
        print(f"  {line}")
    print(f"upgrade: broke {', '.join(broke)}" if broke else "upgrade: everything passed")
    sys.stdout.flush()
    if broke:
        session.error(f"the newest versions break: {', '.join(broke)}")
