"""What deletions return: the identity of what is gone."""

from __future__ import annotations

import strawberry


@strawberry.type(description="A channel that was deleted, with its packages and files.")
class DeletedChannel:
    name: str


@strawberry.type(description="A package file that was deleted.")
class DeletedPackageFile:
    channel: str
    subdir: str
    filename: str
