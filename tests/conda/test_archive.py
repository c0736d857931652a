"""read_package: real packages in both formats, and a corpus of broken and hostile files."""

from __future__ import annotations

import io
import json
import random
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard

from graphconda.conda.archive import PackageMetadata, read_package
from graphconda.conda.listing import ReadLimits
from graphconda.errors import InvalidNameError, InvalidPackageError, TooLargeError
from tests.helpers.packages import (
    Member,
    build_many_members_conda,
    build_package,
    build_raw_package,
    build_zeros_bomb,
    file_member,
    hardlink_member,
    symlink_member,
)

FORMATS = (".conda", ".tar.bz2")
GOOD_INDEX = {
    "name": "foo",
    "version": "1.0",
    "build": "0",
    "build_number": 0,
    "depends": [],
    "subdir": "noarch",
}


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_tar_bz2(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.bz2 built by hand, so its contents can be anything."""
    path.write_bytes(_tar(members, "w:bz2"))
    return path


def write_conda(
    path: Path,
    info: dict[str, bytes],
    *,
    stem: str | None = None,
    metadata: bytes = b'{"conda_pkg_format_version": 2}',
    compression: int = zipfile.ZIP_STORED,
    info_blob: bytes | None = None,
) -> Path:
    """A .conda built by hand: ZIP of metadata.json, info-<stem>.tar.zst, pkg-<stem>.tar.zst."""
    stem = stem if stem is not None else path.name.removesuffix(".conda")
    zstd = zstandard.ZstdCompressor()
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("metadata.json", metadata)
        zf.writestr(f"pkg-{stem}.tar.zst", zstd.compress(_tar({"share/x.txt": b"x"})))
        zf.writestr(f"info-{stem}.tar.zst", info_blob if info_blob is not None else zstd.compress(_tar(info)))
    return path


def write_package(tmp_path: Path, fmt: str, members: dict[str, bytes], filename: str | None = None) -> Path:
    path = tmp_path / (filename or f"foo-1.0-0{fmt}")
    if fmt == ".conda":
        return write_conda(path, members)
    return write_tar_bz2(path, {**members, "share/x.txt": b"x"})


def index_bytes(**changes: object) -> bytes:
    index = {**GOOD_INDEX, **changes}
    return json.dumps({k: v for k, v in index.items() if v is not None}).encode()


def expect_invalid(path: Path, *fragments: str, filename: str | None = None) -> InvalidPackageError:
    with pytest.raises(InvalidPackageError) as info:
        read_package(path, filename or path.name)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value


# ---------------------------------------------------------------- good packages


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_real_package(tmp_path: Path, fmt: str) -> None:
    path = build_package(
        tmp_path,
        "foo-bar",
        "1.2.3",
        "py_0",
        fmt=fmt,
        depends=["python>=3.8", "numpy  1.2.*"],
        constrains=["scipy <2"],
        build_number=3,
        run_exports={"weak": ["foo-bar >=1.2.3"]},
        about={"summary": "A tést", "home": "https://example.org"},
        timestamp=1700000000123,
    )
    before = sorted(tmp_path.iterdir())
    meta = read_package(path, path.name)
    assert isinstance(meta, PackageMetadata)
    assert (meta.name, meta.version, meta.build, meta.subdir) == ("foo-bar", "1.2.3", "py_0", "noarch")
    assert meta.filename == path.name
    # Match specs exactly as declared, not normalised.
    assert meta.index["depends"] == ["python>=3.8", "numpy  1.2.*"]
    assert meta.index["constrains"] == ["scipy <2"]
    assert meta.index["build_number"] == 3
    assert meta.index["noarch"] == "generic"
    assert meta.index["timestamp"] == 1700000000123
    assert meta.about == {"summary": "A tést", "home": "https://example.org"}
    assert meta.run_exports == {"weak": ["foo-bar >=1.2.3"]}
    assert not any(meta.traits.values())
    assert sorted(tmp_path.iterdir()) == before  # nothing extracted


@pytest.mark.parametrize("fmt", FORMATS)
def test_platform_package_without_optional_files(tmp_path: Path, fmt: str) -> None:
    path = build_package(tmp_path, "lib", "2.0", "h1_0", subdir="linux-64", fmt=fmt, about={})
    meta = read_package(path, path.name)
    assert meta.subdir == "linux-64"
    assert "noarch" not in meta.index
    assert meta.run_exports is None
    assert meta.about == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_traits_from_paths_json(tmp_path: Path, fmt: str) -> None:
    path = build_package(
        tmp_path,
        "act",
        fmt=fmt,
        files={
            "etc/conda/activate.d/act.sh": b"export X=1\n",
            "etc/conda/deactivate.d/act.sh": b"unset X\n",
            "bin/.act-post-link.sh": b"echo hi\n",
            "Scripts/.act-pre-unlink.bat": b"echo bye\n",
        },
    )
    traits = read_package(path, path.name).traits
    assert traits == {
        "activate.d": True,
        "binary_prefix": False,
        "deactivate.d": True,
        "post_link": True,
        "pre_link": False,
        "pre_unlink": True,
        "text_prefix": False,
    }


def test_traits_from_legacy_has_prefix(tmp_path: Path) -> None:
    members = {
        "info/index.json": index_bytes(),
        "info/files": b"bin/foo\nlib/libfoo.so\n",
        "info/has_prefix": b'/opt/placeholder binary lib/libfoo.so\n"bin/foo"\n',
    }
    path = write_tar_bz2(tmp_path / "foo-1.0-0.tar.bz2", members)
    traits = read_package(path, path.name).traits
    assert traits["binary_prefix"] and traits["text_prefix"]


def test_tar_bz2_with_dot_slash_members(tmp_path: Path) -> None:
    path = write_tar_bz2(tmp_path / "foo-1.0-0.tar.bz2", {"./info/index.json": index_bytes(), "./a.txt": b"a"})
    assert read_package(path, path.name).name == "foo"


def test_tar_bz2_with_corrupt_payload_after_info(tmp_path: Path) -> None:
    # info/ sits in the first bzip2 block and stays readable; the damage is in a
    # later block, where only a scan to the end sees it.
    payload = random.Random(1).randbytes(3 * 1024 * 1024)
    built = build_package(tmp_path / "src", "foo", fmt=".tar.bz2", files={"share/foo/big.bin": payload})
    data = bytearray(built.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF
    path = tmp_path / built.name
    path.write_bytes(bytes(data))
    expect_invalid(path, "corrupt or truncated", "bzip2 tarball")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_large_package_with_intact_info(tmp_path: Path, fmt: str) -> None:
    # Random payload spans several bzip2 blocks, so info/ still decodes after the cut.
    payload = random.Random(0).randbytes(3 * 1024 * 1024)
    built = build_package(tmp_path / "src", "foo", fmt=fmt, files={"share/foo/big.bin": payload})
    data = built.read_bytes()
    path = tmp_path / built.name
    path.write_bytes(data[: len(data) * 3 // 4])
    expect_invalid(path, "foo-1.0-0")


def test_conda_with_corrupt_pkg_member(tmp_path: Path) -> None:
    built = build_package(tmp_path / "src", "foo", fmt=".conda", files={"share/foo/a.txt": b"a" * 5000})
    data = bytearray(built.read_bytes())
    with zipfile.ZipFile(built) as zf:
        info = zf.getinfo("pkg-foo-1.0-0.tar.zst")
    # Local header: 30 fixed bytes, then name and extra field (lengths at 26 and 28).
    local = info.header_offset
    name_len = int.from_bytes(data[local + 26 : local + 28], "little")
    extra_len = int.from_bytes(data[local + 28 : local + 30], "little")
    data[local + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    path = tmp_path / built.name
    path.write_bytes(bytes(data))
    expect_invalid(path, "ZIP member pkg-foo-1.0-0.tar.zst fails its checksum")


def test_bz2_bomb_is_refused_at_once(tmp_path: Path) -> None:
    path = build_zeros_bomb(tmp_path, "foo", 1100 * 1024 * 1024)  # 1.1 GB of zeros in a few KB
    with pytest.raises(TooLargeError) as info:
        read_package(path, path.name)
    assert "expands to more than 16777216 bytes" in info.value.message
    assert "limits.max_expansion_ratio" in info.value.message


@pytest.mark.parametrize("component", ["pkg", "info"])
def test_member_bomb_is_refused_at_once(tmp_path: Path, component: str) -> None:
    path = build_many_members_conda(tmp_path, "foo", 200_000, component=component)
    with pytest.raises(TooLargeError) as info:
        read_package(path, path.name)
    assert "has more than" in info.value.message and "limits.min_bytes_per_member" in info.value.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_absolute_caps(tmp_path: Path, fmt: str) -> None:
    files = {f"share/foo/{i}.bin": random.Random(i).randbytes(100_000) for i in range(12)}
    path = build_package(tmp_path, "foo", fmt=fmt, files=files)
    assert read_package(path, path.name).name == "foo"
    with pytest.raises(TooLargeError, match=r"expands to more than 1000000 bytes \(limits.max_unpacked_bytes\)"):
        read_package(path, path.name, ReadLimits(max_unpacked_bytes=1_000_000))
    with pytest.raises(TooLargeError, match=r"has more than 10 members \(limits.max_package_members\)"):
        read_package(path, path.name, ReadLimits(max_package_members=10))


@pytest.mark.parametrize("fmt", FORMATS)
def test_pax_header_bombs_are_refused(tmp_path: Path, fmt: str) -> None:
    """tarfile parses pax records slowly: one huge extended header, or many big ones, are refused."""
    huge = {f"gc.{i}": "1" for i in range(20_000)}  # ~200 KB of records in one header
    path = build_raw_package(tmp_path / "huge", "foo", [file_member("share/foo/a", pax_headers=huge)], fmt=fmt)
    with pytest.raises(TooLargeError, match=r"has a tar extended header of [0-9]+ bytes \(at most 65536\)"):
        read_package(path, path.name)
    many = {f"gc.{i}": "1" for i in range(1_500)}  # ~16 KB each, 200 times
    members = [file_member(f"share/foo/{i}", pax_headers=many) for i in range(200)]
    path = build_raw_package(tmp_path / "many", "foo", members, fmt=fmt)
    with pytest.raises(TooLargeError, match="has more than 5000 members"):
        read_package(path, path.name)


# ---------------------------------------------------------------- member paths

# name -> (payload members, paths.json entries or None for the members' names, words of the refusal)
UNSAFE: dict[str, tuple[list[Member], list[str] | None, str]] = {
    "dot-dot file": ([file_member("../../../../tmp/pwned")], None,
                     "member '../../../../tmp/pwned' would land outside the install prefix ('..' component)"),
    "absolute file": ([file_member("/etc/cron.d/evil")], None,
                      "member '/etc/cron.d/evil' would land outside the install prefix (absolute path)"),
    "dot-dot inside": ([file_member("share/../../evil")], None, "'share/../../evil' would land outside"),
    "windows dot-dot": ([file_member("share\\..\\..\\evil")], None, "('..' component)"),
    "windows drive": ([file_member("C:/Windows/evil.dll")], None, "(absolute path)"),
    "absolute symlink": ([symlink_member("share/foo/shadow", "/etc/shadow")], None,
                         "member 'share/foo/shadow' would land outside the install prefix "
                         "(symlink to the absolute path '/etc/shadow')"),
    "relative symlink out": ([symlink_member("share/foo/up", "../../../etc")], None,
                             "(symlink to '../../../etc', outside the package)"),
    "symlink through a symlinked dir": ([symlink_member("share/d", "."), symlink_member("share/d/x", "../../etc")],
                                        None, "member 'share/d/x' would land outside the install prefix "
                                        "(below the symlink 'share/d')"),
    "hard link out": ([hardlink_member("share/foo/h", "../../etc/passwd")], None,
                      "(hard link to '../../etc/passwd': '..' component)"),
    "paths.json escapes": ([file_member("share/foo/ok")], ["share/foo/ok", "../../../../tmp/pwned"],
                           "info/paths.json lists '../../../../tmp/pwned', which would land outside"),
    "absolute in paths.json": ([file_member("share/foo/ok")], ["/etc/cron.d/evil"],
                               "info/paths.json lists '/etc/cron.d/evil'"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_member_paths_are_refused_unless_allowed(tmp_path: Path, fmt: str, case: str) -> None:
    members, paths, words = UNSAFE[case]
    path = build_raw_package(tmp_path, "foo", members, fmt=fmt, paths=paths)
    error = expect_invalid(path, words, "foo-1.0-0" + fmt)
    assert "limits.allow_unsafe_paths_channels" in error.message
    assert read_package(path, path.name, ReadLimits(allow_unsafe_paths=True)).name == "foo"


def test_unsafe_member_in_the_info_tarball_of_a_conda(tmp_path: Path) -> None:
    path = build_raw_package(tmp_path, "foo", [file_member("share/foo/ok")],
                             info_members=[file_member("info/../../../evil")])
    expect_invalid(path, "member 'info/../../../evil' would land outside the install prefix")


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlinks_inside_the_package_are_fine(tmp_path: Path, fmt: str) -> None:
    members = [file_member("lib/libfoo.so.1", b"elf"), symlink_member("lib/libfoo.so", "libfoo.so.1"),
               symlink_member("bin/foo", "../lib/libfoo.so"), symlink_member("share/foo/self", "."),
               symlink_member("etc/conf", "./../share/foo/../../lib"), hardlink_member("lib/libfoo.so.2",
                                                                                 "lib/libfoo.so.1")]
    path = build_raw_package(tmp_path, "foo", members, fmt=fmt)
    assert read_package(path, path.name).name == "foo"


# ---------------------------------------------------------------- broken containers


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"foo-1.0-0{fmt}"
    path.write_bytes(b"")
    expect_invalid(path, "is empty")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_archive(tmp_path: Path, fmt: str) -> None:
    built = build_package(tmp_path / "src", "foo", fmt=fmt, files={"share/foo/big.bin": bytes(range(256)) * 400})
    data = built.read_bytes()
    path = tmp_path / built.name
    path.write_bytes(data[: len(data) // 2])
    error = expect_invalid(path, "foo-1.0-0")
    assert "corrupt or truncated" in error.message or "not a readable ZIP" in error.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_file_with_package_name(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"foo-1.0-0{fmt}"
    path.write_text("this is not a package\n" * 10)
    expected = "not a readable ZIP archive" if fmt == ".conda" else "corrupt or truncated"
    expect_invalid(path, expected)


def test_tar_bz2_named_conda(tmp_path: Path) -> None:
    built = build_package(tmp_path / "src", "foo", fmt=".tar.bz2")
    path = tmp_path / "foo-1.0-0.conda"
    path.write_bytes(built.read_bytes())
    expect_invalid(path, "not a readable ZIP archive")


def test_conda_named_tar_bz2(tmp_path: Path) -> None:
    built = build_package(tmp_path / "src", "foo", fmt=".conda")
    path = tmp_path / "foo-1.0-0.tar.bz2"
    path.write_bytes(built.read_bytes())
    expect_invalid(path, "corrupt or truncated")


def test_conda_with_wrong_member_names(tmp_path: Path) -> None:
    path = write_conda(tmp_path / "foo-1.0-0.conda", {"info/index.json": index_bytes()}, stem="wrongname")
    expect_invalid(path, "missing info-foo-1.0-0.tar.zst, pkg-foo-1.0-0.tar.zst", "info-wrongname.tar.zst")


def test_conda_with_only_metadata_and_wrong_info(tmp_path: Path) -> None:
    path = tmp_path / "foo-1.0-0.conda"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", b'{"conda_pkg_format_version": 2}')
        zf.writestr("info-wrongname.tar.zst", zstandard.compress(_tar({"info/index.json": index_bytes()})))
    expect_invalid(path, "missing info-foo-1.0-0.tar.zst")


def test_conda_without_metadata_json(tmp_path: Path) -> None:
    path = tmp_path / "foo-1.0-0.conda"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("info-foo-1.0-0.tar.zst", zstandard.compress(_tar({"info/index.json": index_bytes()})))
        zf.writestr("pkg-foo-1.0-0.tar.zst", zstandard.compress(_tar({})))
    expect_invalid(path, "missing metadata.json")


def test_conda_with_compressed_members(tmp_path: Path) -> None:
    path = write_conda(
        tmp_path / "foo-1.0-0.conda", {"info/index.json": index_bytes()}, compression=zipfile.ZIP_DEFLATED
    )
    expect_invalid(path, "must be stored uncompressed")


def test_conda_with_bad_metadata_json(tmp_path: Path) -> None:
    path = write_conda(tmp_path / "foo-1.0-0.conda", {"info/index.json": index_bytes()}, metadata=b"{nope")
    expect_invalid(path, "metadata.json")


def test_conda_with_garbage_info_tarball(tmp_path: Path) -> None:
    path = write_conda(tmp_path / "foo-1.0-0.conda", {}, info_blob=b"\x28\xb5\x2f\xfd" + b"garbage" * 20)
    expect_invalid(path, "corrupt or truncated", "info-foo-1.0-0.tar.zst")


def test_conda_with_ambiguous_members(tmp_path: Path) -> None:
    path = write_conda(tmp_path / "foo-1.0-0.conda", {"info/index.json": index_bytes()})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("info-foo-1.0-0.tar.zst.sig", b"x")
    expect_invalid(path, "ambiguous members")


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_index_json(tmp_path: Path, fmt: str) -> None:
    path = write_package(tmp_path, fmt, {"info/about.json": b"{}"})
    expect_invalid(path, "has no info/index.json")


def test_tar_bz2_index_json_twice(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:bz2") as tar:
        for data in (index_bytes(), index_bytes(version="2.0")):
            info = tarfile.TarInfo("info/index.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "foo-1.0-0.tar.bz2"
    path.write_bytes(raw.getvalue())
    expect_invalid(path, "info/index.json appears twice")


def test_index_json_symlink(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:bz2") as tar:
        info = tarfile.TarInfo("info/index.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "../share/foo/index.json"  # inside the package; /etc/passwd: see UNSAFE
        tar.addfile(info)
    path = tmp_path / "foo-1.0-0.tar.bz2"
    path.write_bytes(raw.getvalue())
    expect_invalid(path, "info/index.json is not a regular file")


# ---------------------------------------------------------------- broken metadata


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        (b"{not json", "info/index.json is not valid JSON"),
        (b"\xff\xfe\x00garbage", "info/index.json is not valid JSON"),
        (b'{"name": NaN}', "info/index.json is not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "info/index.json is not valid JSON"),
        (b'["foo", "1.0", "0"]', "info/index.json is not a JSON object"),
        (index_bytes(name=None), "lacks the required field 'name'"),
        (index_bytes(version=None), "lacks the required field 'version'"),
        (index_bytes(build=None), "lacks the required field 'build'"),
        (index_bytes(build_number=None), "lacks the required field 'build_number'"),
        (index_bytes(subdir=None), "lacks the required field 'subdir'"),
        (index_bytes(version=1.0), "field 'version' must be a string"),
        (index_bytes(build_number="0"), "'build_number' must be an integer from 0 to"),
        (index_bytes(build_number=-1), "'build_number' must be an integer from 0 to"),
        (index_bytes(build_number=True), "'build_number' must be an integer from 0 to"),
        (index_bytes(depends="python"), "'depends' must be a list of strings"),
        (index_bytes(depends=["python", 3]), "'depends' must be a list of strings"),
        (index_bytes(constrains={"a": 1}), "'constrains' must be a list of strings"),
        (index_bytes(timestamp="yesterday"), "'timestamp' must be an integer from 0 to"),
        (index_bytes(timestamp=1.7e12), "'timestamp' must be an integer from 0 to"),
        # Fields rattler would refuse, taking the whole repodata.json down with them.
        (index_bytes(license=5), "conda clients cannot read info/index.json: 'invalid type: integer `5`"),
        (index_bytes(noarch="weird"), "conda clients cannot read info/index.json"),
        (index_bytes(features=["x"]), "conda clients cannot read info/index.json"),
        (index_bytes(purls=["not-a-purl"]), "conda clients cannot read info/index.json"),
        (index_bytes(extra_depends="test"), "conda clients cannot read info/index.json"),
        (index_bytes(repodata_revision="3"), "conda clients cannot read info/index.json"),
        (index_bytes(subdir="Linux-64"), "invalid subdir 'Linux-64'"),
        (index_bytes(subdir="../noarch"), "invalid subdir"),
    ],
)
def test_bad_index_json(tmp_path: Path, fmt: str, index: bytes, fragment: str) -> None:
    path = write_package(tmp_path, fmt, {"info/index.json": index})
    error = expect_invalid(path, fragment)
    assert error.field == "file"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("overrides", "declared"),
    [({"version": "2.0"}, "foo-2.0-0"), ({"name": "bar"}, "bar-1.0-0"), ({"build": "1"}, "foo-1.0-1")],
)
def test_filename_disagrees_with_index(tmp_path: Path, fmt: str, overrides: dict, declared: str) -> None:
    path = build_package(tmp_path, "foo", "1.0", "0", fmt=fmt, index_overrides=overrides)
    error = expect_invalid(path, f"filename '{path.name}' does not match info/index.json", repr(declared))
    assert error.field == "filename"


@pytest.mark.parametrize("fmt", FORMATS)
def test_uploaded_name_differs_from_file(tmp_path: Path, fmt: str) -> None:
    path = build_package(tmp_path, "foo", "1.0", "0", fmt=fmt)
    # A renamed .conda is caught by its member names already.
    fragment = "missing info-foo-1.1-0.tar.zst" if fmt == ".conda" else "does not match"
    expect_invalid(path, fragment, filename=f"foo-1.1-0{fmt}")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("member", "data", "fragment"),
    [
        ("info/about.json", b"<html>", "info/about.json is not valid JSON"),
        ("info/about.json", b"[]", "info/about.json is not a JSON object"),
        ("info/run_exports.json", b'"weak"', "info/run_exports.json is not a JSON object"),
        ("info/run_exports.json", b'{"weak": "foo"}', "conda clients cannot read info/run_exports.json"),
        ("info/run_exports.json", b'{"strong": [1]}', "conda clients cannot read info/run_exports.json"),
        ("info/paths.json", b'{"paths_version": 1}', "info/paths.json has no 'paths' list"),
        ("info/paths.json", b'{"paths": [{"path": "x"}]}', "without a '_path'"),
    ],
)
def test_bad_optional_metadata(tmp_path: Path, fmt: str, member: str, data: bytes, fragment: str) -> None:
    path = write_package(tmp_path, fmt, {"info/index.json": index_bytes(), member: data})
    expect_invalid(path, fragment)


# ---------------------------------------------------------------- bad filenames


@pytest.mark.parametrize(
    "filename",
    [
        "../foo-1.0-0.conda",
        "sub/foo-1.0-0.conda",
        "Foo-1.0-0.conda",
        "foo-1.0-0.zip",
        "foo-1..0-0.conda",
        "f" * 65 + "-1.0-0.conda",
    ],
)
def test_bad_filenames(tmp_path: Path, filename: str) -> None:
    path = build_package(tmp_path, "foo")
    with pytest.raises(InvalidNameError) as info:
        read_package(path, filename)
    assert info.value.field == "filename"
