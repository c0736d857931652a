"""Bytes a client downloads for one subdir's repodata.json, per encoding: `python bench/encodings.py [--records N]`.

Builds the subdir's files with the builders whose bytes the publisher writes (conda/repodata.py) from N
records of bench/corpus.py and prints the size of each variant a client can fetch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import corpus
from graphconda.conda import repodata as rd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--zstd-level", type=int, default=16)
    args = parser.parse_args()
    rows = [(fn, json.dumps(record, sort_keys=True), False) for fn, record in corpus.records(args.records)]
    repodata = rd.build_repodata("linux-64", rows)
    print(f"{args.records} records ({corpus.source()})")
    for data, label in ((repodata, "identity"), (rd.compress_gzip(repodata), "Content-Encoding: gzip"),
                        (rd.compress_zst(repodata, args.zstd_level), "repodata.json.zst")):
        print(f"  {label:<24} {len(data):>10,} bytes  {len(data) / len(repodata):6.1%}")


if __name__ == "__main__":
    main()
