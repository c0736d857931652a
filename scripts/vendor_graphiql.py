"""Copy GraphiQL and React from the npm registry into graphconda/web/vendor/, at pinned versions.

Usage: python scripts/vendor_graphiql.py   (needs `npm`; run it after changing a version below,
then update the paths in graphconda/web/graphiql/index.html and run the browser tests)

graphconda serves GraphiQL from its own package instead of a CDN, so that the page works
offline and under a `script-src 'self'` Content-Security-Policy. The files are the
packages' standalone (UMD) builds, copied verbatim from the tarballs `npm pack` fetches
(npm checks them against the registry's integrity hashes), with each package's LICENSE.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent.parent / "graphconda" / "web" / "vendor"
# package, version, files inside the tarball's package/ directory
PACKAGES = [
    ("react", "18.3.1", ["umd/react.production.min.js", "LICENSE"]),
    ("react-dom", "18.3.1", ["umd/react-dom.production.min.js", "LICENSE"]),
    ("graphiql", "3.8.3", ["graphiql.min.js", "graphiql.min.css", "LICENSE"]),
]


def main() -> int:
    if shutil.which("npm") is None:
        print("npm is needed (apt-get install npm)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{name}@{version}" for name, version, _ in PACKAGES]
        subprocess.run(["npm", "pack", "--silent", *specs], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        for name, version, files in PACKAGES:
            target = VENDOR_DIR / f"{name}-{version}"
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as archive:
                for member in files:
                    source = archive.extractfile(f"package/{member}")
                    assert source is not None, member
                    (target / Path(member).name).write_bytes(source.read())
            print(f"{target.relative_to(VENDOR_DIR.parent.parent.parent)}: {', '.join(Path(f).name for f in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
