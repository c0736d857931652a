"""Bytes a client downloads for one subdir's repodata.json, per encoding: `python bench/encodings.py [--records N]`.

Builds the subdir's files exactly as the publisher does (services/publishing.py) from N
records of bench/corpus.py and prints the size of each variant a client can fetch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import corpus
from graphconda.services import layout
from graphconda.services.publishing import PublishOptions, _build_subdir_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--zstd-level", type=int, default=16)
    args = parser.parse_args()
    rows = [(fn, json.dumps(record, sort_keys=True), False) for fn, record in corpus.records(args.records)]
    files = _build_subdir_files("linux-64", rows, [], PublishOptions(shards=False, bz2=False, current_repodata=False),
                                args.zstd_level)
    raw = len(files[layout.REPODATA] or b"")
    print(f"{args.records} records ({corpus.source()})")
    for name, label in ((layout.REPODATA, "identity"), (layout.REPODATA_GZ, "Content-Encoding: gzip"),
                        (layout.REPODATA_ZST, "repodata.json.zst")):
        size = len(files[name] or b"")
        print(f"  {label:<24} {size:>10,} bytes  {size / raw:6.1%}")


if __name__ == "__main__":
    main()
