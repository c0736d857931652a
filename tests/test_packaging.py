"""A normal (non-editable) install: the wheel carries the dashboard and GraphiQL and serves them.

The wheel is built from a copy of the sources with the test environment's setuptools (no
build isolation, no index: no network), installed with `--no-deps` into a fresh venv that
borrows the test environment's site-packages for its dependencies, and started as an
operator would (`python -m graphconda serve`) from a directory outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.fixtures.server import free_port
from tests.helpers.html import page_assets

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What the installed copy must serve, besides what the GraphiQL page loads.
ASSETS = ["/", "/web/app.js", "/web/lib/api.js", "/web/pages/channel.js", "/web/style.css",
          "/web/vendor/graphiql-3.8.3/LICENSE"]


def run(*args: str | Path, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCONDA_")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with graphconda installed from a freshly built wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"  # a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "graphconda", source / "graphconda", ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "-q", "-w", tmp / "dist", source)
    (wheel,) = (tmp / "dist").glob("graphconda-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--disable-pip-version-check", "-q", wheel)
    # Only now (pip must not see the checkout's editable install as already there): dependencies
    # from the test environment. Its .pth files, the editable finder among them, stay unprocessed.
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip())
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "test-environment.pth").write_text("".join(f"{p}\n" for p in paths))
    return python


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outside the checkout: the server's working directory, with its data in data/."""
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def served(installed: Path, workdir: Path) -> Iterator[str]:
    """`python -m graphconda serve` of the installed copy, run outside the checkout."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCONDA_")}
    log = (workdir / "serve.log").open("w")
    process = subprocess.Popen(
        [installed, "-m", "graphconda", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", workdir / "data"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (workdir / "serve.log").read_text()
            try:
                if httpx2.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, (workdir / "serve.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_the_installed_copy_is_the_one_that_runs(installed: Path, tmp_path: Path) -> None:
    where = run(installed, "-c", "import graphconda.http.web as w; print(w.__file__); print(w.WEB_DIR)", cwd=tmp_path)
    module, web_dir = where.split()
    venv = installed.parent.parent
    assert Path(module).is_relative_to(venv) and Path(web_dir).is_relative_to(venv), where
    assert (Path(web_dir) / "index.html").is_file()


@pytest.mark.parametrize("path", ASSETS)
def test_wheel_install_serves_the_dashboard(served: str, path: str) -> None:
    response = httpx2.get(served + path, timeout=10)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_wheel_install_serves_graphiql(served: str) -> None:
    page = httpx2.get(f"{served}/graphql", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "graphiql" in page.text
    assets = page_assets(page.text)
    assert len(assets) == 6, assets
    for asset in assets:
        assert httpx2.get(served + asset, timeout=10).status_code == 200, asset


def test_wheel_install_serves_the_dashboard_under_a_token_path(installed: Path, served: str, workdir: Path) -> None:
    """conda's `/t/<key>` with nothing after it is the dashboard too."""
    data = ["--data-dir", workdir / "data"]
    run(installed, "-m", "graphconda", "user", "create", "reader", *data, cwd=workdir)
    key = run(installed, "-m", "graphconda", "api-key", "create", "--user", "reader", *data, cwd=workdir).strip()
    for path in (f"/t/{key}", f"/t/{key}/"):
        response = httpx2.get(served + path, timeout=10)
        assert response.status_code == 200, response.text[:500]
        assert '<script type="module" src="/web/app.js">' in response.text
