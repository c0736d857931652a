"""Where a channel's files live in the blob store.

    channels/<channel>/channeldata.json
    channels/<channel>/<subdir>/repodata.json, .json.zst, .json.bz2, .json.gz, current_repodata.json,
                               current_repodata.json.zst, .json.gz, run_exports.json,
                               repodata_shards.msgpack.zst
    channels/<channel>/<subdir>/shards/<sha256 hex>.msgpack.zst
    channels/<channel>/<subdir>/<sha256 hex>/<filename>          package files

Package files are keyed by their content as well as their name, so two uploads of the
same filename never write the same key unless they carry the same bytes: a failed or
losing upload can remove its own blob without touching the winner's.
"""

from __future__ import annotations

import re

REPODATA = "repodata.json"
REPODATA_ZST = "repodata.json.zst"
REPODATA_BZ2 = "repodata.json.bz2"
REPODATA_GZ = "repodata.json.gz"
CURRENT_REPODATA = "current_repodata.json"
CURRENT_REPODATA_ZST = "current_repodata.json.zst"
CURRENT_REPODATA_GZ = "current_repodata.json.gz"
RUN_EXPORTS = "run_exports.json"
SHARD_INDEX = "repodata_shards.msgpack.zst"
CHANNELDATA = "channeldata.json"
# Gzip copies served as `Content-Encoding: gzip` of the file they copy, never under their own name.
GZIP_COPIES = {REPODATA: REPODATA_GZ, CURRENT_REPODATA: CURRENT_REPODATA_GZ}
# Every monolithic file a subdir may publish (the shard index is written per upload).
SUBDIR_FILES = (REPODATA, REPODATA_ZST, REPODATA_BZ2, REPODATA_GZ, CURRENT_REPODATA, CURRENT_REPODATA_ZST,
                CURRENT_REPODATA_GZ, RUN_EXPORTS)

_PACKAGE_KEY = re.compile(r"channels/([^/]+)/([^/]+)/([0-9a-f]{64})/([^/]+)")


def channel_prefix(channel: str) -> str:
    return f"channels/{channel}/"


def channel_file_key(channel: str, name: str) -> str:
    return f"channels/{channel}/{name}"


def subdir_file_key(channel: str, subdir: str, name: str) -> str:
    return f"channels/{channel}/{subdir}/{name}"


def shard_key(channel: str, subdir: str, digest_hex: str) -> str:
    return f"channels/{channel}/{subdir}/shards/{digest_hex}.msgpack.zst"


def shards_prefix(channel: str, subdir: str) -> str:
    return f"channels/{channel}/{subdir}/shards/"


def package_key(channel: str, subdir: str, sha256: str, filename: str) -> str:
    # '!' (version epochs) is not a storage key character; '=' never occurs in a conda filename.
    return f"channels/{channel}/{subdir}/{sha256}/{filename.replace('!', '=')}"


def parse_package_key(key: str) -> tuple[str, str, str, str] | None:
    """(channel, subdir, sha256, filename) of a package file key, None for any other key."""
    match = _PACKAGE_KEY.fullmatch(key)
    if match is None:
        return None
    channel, subdir, sha256, filename = match.groups()
    return channel, subdir, sha256, filename.replace("=", "!")
