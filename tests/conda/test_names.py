"""CEP 26 identifier rules: what is accepted, what is refused, and what the refusal says."""

from __future__ import annotations

import pytest

from graphconda.conda.names import (
    KNOWN_SUBDIRS,
    ParsedFilename,
    parse_filename,
    validate_build,
    validate_channel_name,
    validate_package_name,
    validate_subdir,
    validate_version,
)
from graphconda.errors import InvalidInputError, InvalidNameError


@pytest.mark.parametrize(
    "name",
    ["numpy", "python_abi", "_libgcc_mutex", "r-base", "ca-certificates", "7zip", "zope.interface", "a", "x" * 64],
)
def test_valid_package_names(name: str) -> None:
    assert validate_package_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("NumPy", "lowercase"),
        ("foo/bar", "lowercase"),
        ("..", "lowercase"),
        ("foo..bar", "two of"),
        ("foo-_bar", "two of"),
        ("__virtual", "single '_'"),
        ("-foo", "start with"),
        (".hidden", "start with"),
        ("foo bar", "lowercase"),
        ("fü", "lowercase"),
        ("foo\n", "lowercase"),
        ("x" * 65, "the limit is 64"),
        ("", "must not be empty"),
    ],
)
def test_invalid_package_names(name: str, rule: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_package_name(name)
    assert rule in info.value.message
    assert info.value.field == "name"
    assert isinstance(info.value, InvalidInputError)


def test_message_quotes_value_truncated() -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_package_name("A" * 500)
    message = info.value.message
    assert "'AAAA" in message
    assert "..." in message
    assert len(message) < 250


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidNameError, match="must be a string"):
        validate_package_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["1.0", "2024a", "1!2.0", "1.0.post1", "0.1_dev", "1.2.3+local"])
def test_valid_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize(
    ("version", "rule"),
    [
        ("1.0-1", "lowercase letters"),
        ("1.0RC1", "lowercase letters"),
        ("1..0", "not a valid conda version"),
        ("1.", "not a valid conda version"),
        ("1" * 65, "the limit is 64"),
        ("1.0 ", "lowercase letters"),
    ],
)
def test_invalid_versions(version: str, rule: str) -> None:
    with pytest.raises(InvalidNameError, match="version") as info:
        validate_version(version)
    assert rule in info.value.message


@pytest.mark.parametrize("build", ["0", "py312h1234567_0", "h1_0.1+cuda", "ABC_0"])
def test_valid_builds(build: str) -> None:
    assert validate_build(build) == build


@pytest.mark.parametrize("build", ["a-b", "a b", "ü", "0" * 65, "a/b"])
def test_invalid_builds(build: str) -> None:
    with pytest.raises(InvalidNameError, match="build string"):
        validate_build(build)


@pytest.mark.parametrize("subdir", KNOWN_SUBDIRS)
def test_known_subdirs_are_valid(subdir: str) -> None:
    assert validate_subdir(subdir) == subdir


def test_known_subdirs_list() -> None:
    assert "noarch" in KNOWN_SUBDIRS and "linux-64" in KNOWN_SUBDIRS and "osx-arm64" in KNOWN_SUBDIRS
    assert len(set(KNOWN_SUBDIRS)) == len(KNOWN_SUBDIRS)


@pytest.mark.parametrize(
    "subdir", ["Linux-64", "linux", "linux-64-extra", "linux_64", "../noarch", "noarch/", "", "a" * 20 + "-" + "b" * 20]
)
def test_invalid_subdirs(subdir: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_subdir(subdir)
    assert info.value.field == "subdir"


@pytest.mark.parametrize("name", ["conda-forge", "main", "my.channel", "a", "0day", "x_y", "c" * 64])
def test_valid_channel_names(name: str) -> None:
    assert validate_channel_name(name) == name


@pytest.mark.parametrize(
    "name", ["Conda-Forge", "a/b", ".", "..", "..x", "-a", "_a", "a b", "kanäle", "", "c" * 65, "a\x00"]
)
def test_invalid_channel_names(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_channel_name(name)
    assert info.value.field == "channel"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("numpy-1.26.4-py312h1234567_0.conda", ("numpy", "1.26.4", "py312h1234567_0", ".conda")),
        ("ca-certificates-2024.2.2-hbcca054_0.tar.bz2", ("ca-certificates", "2024.2.2", "hbcca054_0", ".tar.bz2")),
        ("r-base-4.3.1-h1_0.conda", ("r-base", "4.3.1", "h1_0", ".conda")),
        ("_libgcc_mutex-0.1-conda_forge.tar.bz2", ("_libgcc_mutex", "0.1", "conda_forge", ".tar.bz2")),
    ],
)
def test_parse_filename(filename: str, expected: tuple[str, str, str, str]) -> None:
    parsed = parse_filename(filename)
    assert parsed == ParsedFilename(*expected)
    assert parsed.filename == filename
    assert parsed.stem == filename.removesuffix(parsed.extension)


@pytest.mark.parametrize(
    ("filename", "rule"),
    [
        ("../foo-1.0-0.conda", "must not contain"),
        ("foo/bar-1.0-0.conda", "must not contain"),
        ("foo\\bar-1.0-0.conda", "must not contain"),
        ("foo-1..0-0.conda", "must not contain"),
        ("foo-1.0-0.conda\x00.txt", "must not contain"),
        ("foo-1.0-0.zip", "ends in '.conda' or '.tar.bz2'"),
        ("foo-1.0-0.CONDA", "ends in '.conda' or '.tar.bz2'"),
        ("foo-1.0.conda", "expected '<name>-<version>-<build>.conda'"),
        ("foo--0.conda", "expected"),
        ("Foo-1.0-0.conda", "package name"),
        ("foo-1.0A-0.conda", "version"),
        ("foo-1.0-a b.conda", "build string"),
        ("f" * 65 + "-1.0-0.conda", "package name"),
        ("foo-" + "1" * 65 + "-0.conda", "version"),
        ("foo-1.0-" + "b" * 65 + ".conda", "build string"),
        ("a" * 60 + "-" + "1" * 60 + "-" + "b" * 90 + ".conda", "the limit is 211"),
        (".conda", "expected"),
    ],
)
def test_parse_filename_rejects(filename: str, rule: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_filename(filename)
    assert rule in info.value.message
    assert info.value.field == "filename"
