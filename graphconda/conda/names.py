"""Identifier rules for channels, subdirs, packages and filenames (CEP 26).

Every validator returns its input unchanged when it is valid and raises
InvalidNameError otherwise, with a message that quotes the offending value
(truncated) and states the rule, so it can be shown to the uploader as is.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from rattler import Version
from rattler.exceptions import InvalidVersionError

from graphconda.errors import InvalidNameError

MAX_NAME_LENGTH = 64
MAX_VERSION_LENGTH = 64
MAX_BUILD_LENGTH = 64
MAX_SUBDIR_LENGTH = 32
MAX_FILENAME_LENGTH = 211
MAX_CHANNEL_NAME_LENGTH = 64

EXTENSIONS = (".conda", ".tar.bz2")

KNOWN_SUBDIRS = (
    "noarch",
    "linux-64",
    "linux-aarch64",
    "linux-ppc64le",
    "linux-s390x",
    "linux-armv7l",
    "linux-32",
    "osx-64",
    "osx-arm64",
    "win-64",
    "win-arm64",
    "win-32",
    "emscripten-wasm32",
    "wasi-wasm32",
    "zos-z",
)

# The CEP 26 regex, verbatim; applied without re.IGNORECASE because
# distributable names must be lowercase. fullmatch, so "$" never accepts a
# trailing newline.
_PACKAGE_NAME = re.compile(r"(([a-z0-9])|([a-z0-9_](?!_)))[._-]?([a-z0-9]+(\.|-|_|$))*")
_SEPARATOR_RUN = re.compile(r"[._-]{2}")
_VERSION = re.compile(r"[0-9a-z._+!]+")
_BUILD = re.compile(r"[a-zA-Z0-9_.+]+")
_SUBDIR = re.compile(r"[a-z0-9]+-[a-z0-9]+")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


class ParsedFilename(NamedTuple):
    """The parts of `<name>-<version>-<build><extension>`."""

    name: str
    version: str
    build: str
    extension: str  # ".conda" or ".tar.bz2"

    @property
    def stem(self) -> str:
        """The CEP 26 distribution string `<name>-<version>-<build>`."""
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def filename(self) -> str:
        return self.stem + self.extension


def show(value: object, limit: int = 100) -> str:
    """repr() of a user-supplied value, truncated so messages stay short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require_str(value: object, what: str, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a string, got {show(value)}", field=field)
    if not value:
        raise InvalidNameError(f"{what} must not be empty", field=field)
    return value


def validate_package_name(name: str) -> str:
    """A distributable package name: lowercase `[a-z0-9_.-]`, at most 64 characters.

    It starts with a letter, a digit or a single underscore and never has two
    separators in a row (CEP 26).
    """
    _require_str(name, "package name", "name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"package name {show(name)} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}",
            field="name",
        )
    if not _PACKAGE_NAME.fullmatch(name) or _SEPARATOR_RUN.search(name):
        raise InvalidNameError(
            f"invalid package name {show(name)}: use only lowercase letters, digits, "
            "'.', '-' and '_', start with a letter, a digit or a single '_', "
            "and never put two of '.', '-', '_' in a row",
            field="name",
        )
    return name


def validate_version(version: str) -> str:
    """A version string: lowercase letters, digits, '.', '_', '+', '!'; at most 64 characters.

    It must also parse as a conda version (no empty components such as
    "1..0"), because one unparsable record breaks clients that parse the whole
    repodata document.
    """
    _require_str(version, "version", "version")
    if len(version) > MAX_VERSION_LENGTH:
        raise InvalidNameError(
            f"version {show(version)} is {len(version)} characters long; the limit is {MAX_VERSION_LENGTH}",
            field="version",
        )
    if not _VERSION.fullmatch(version):
        raise InvalidNameError(
            f"invalid version {show(version)}: use only lowercase letters, digits, '.', '_', '+' and '!'",
            field="version",
        )
    if not _parses_as_version(version):
        raise InvalidNameError(f"invalid version {show(version)}: not a valid conda version", field="version")
    return version


@functools.lru_cache(maxsize=8192)
def _parses_as_version(version: str) -> bool:
    """Cached: a mirror sync checks 200,000 filenames with far fewer distinct versions, and a
    rattler Version costs microseconds to build."""
    try:
        Version(version)
    except InvalidVersionError:
        return False
    return True


def validate_build(build: str) -> str:
    """A build string: ASCII letters, digits, '_', '.', '+'; at most 64 characters."""
    _require_str(build, "build string", "build")
    if len(build) > MAX_BUILD_LENGTH:
        raise InvalidNameError(
            f"build string {show(build)} is {len(build)} characters long; the limit is {MAX_BUILD_LENGTH}",
            field="build",
        )
    if not _BUILD.fullmatch(build):
        raise InvalidNameError(
            f"invalid build string {show(build)}: use only ASCII letters, digits, '_', '.' and '+'",
            field="build",
        )
    return build


def validate_subdir(subdir: str) -> str:
    """`noarch` or `<os>-<arch>` of lowercase letters and digits, at most 32 characters."""
    _require_str(subdir, "subdir", "subdir")
    if subdir == "noarch":
        return subdir
    if len(subdir) > MAX_SUBDIR_LENGTH or not _SUBDIR.fullmatch(subdir):
        raise InvalidNameError(
            f"invalid subdir {show(subdir)}: expected 'noarch' or '<os>-<arch>' "
            f"(lowercase letters and digits, such as 'linux-64'), "
            f"at most {MAX_SUBDIR_LENGTH} characters",
            field="subdir",
        )
    return subdir


def validate_channel_name(name: str) -> str:
    """A channel name: lowercase letter or digit first, then `[a-z0-9._-]`, at most 64."""
    _require_str(name, "channel name", "channel")
    if len(name) > MAX_CHANNEL_NAME_LENGTH:
        raise InvalidNameError(
            f"channel name {show(name)} is {len(name)} characters long; the limit is {MAX_CHANNEL_NAME_LENGTH}",
            field="channel",
        )
    # The first character is never '.', so "." and ".." cannot match.
    if not _CHANNEL_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid channel name {show(name)}: start with a lowercase letter or digit "
            "and use only lowercase letters, digits, '.', '-' and '_'",
            field="channel",
        )
    return name


def parse_filename(filename: str) -> ParsedFilename:
    """Split and validate `<name>-<version>-<build>.conda|.tar.bz2`.

    Version and build strings cannot contain '-', so the build is what follows
    the last '-' and the version what follows the one before; the name may
    contain '-'.
    """
    _require_str(filename, "filename", "filename")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidNameError(
            f"filename {show(filename)} is {len(filename)} characters long; the limit is {MAX_FILENAME_LENGTH}",
            field="filename",
        )
    # Checked before anything else so a path never gets a misleading message.
    if "/" in filename or "\\" in filename or "\x00" in filename or ".." in filename:
        raise InvalidNameError(
            f"invalid filename {show(filename)}: a filename must not contain '/', '\\', '..' or NUL",
            field="filename",
        )
    extension = next((ext for ext in EXTENSIONS if filename.endswith(ext)), None)
    if extension is None:
        raise InvalidNameError(
            f"invalid filename {show(filename)}: a conda package filename ends in '.conda' or '.tar.bz2'",
            field="filename",
        )
    parts = filename[: -len(extension)].rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise InvalidNameError(
            f"invalid filename {show(filename)}: expected '<name>-<version>-<build>{extension}'",
            field="filename",
        )
    name, version, build = parts
    try:
        validate_package_name(name)
        validate_version(version)
        validate_build(build)
    except InvalidNameError as exc:
        raise InvalidNameError(f"invalid filename {show(filename)}: {exc.message}", field="filename") from exc
    return ParsedFilename(name, version, build, extension)
