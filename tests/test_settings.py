"""Settings: TOML file, environment overrides, and one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphconda.errors import ConfigError
from graphconda.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_embedded_sqlite_and_local_files() -> None:
    settings = load_settings(environ={})
    assert settings.server.port == 8000
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.database_url.endswith("graphconda-data/graphconda.db")
    assert settings.storage.backend == "local"
    assert settings.storage_path == Path("graphconda-data/files")


def test_toml_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[storage]\nbackend = "local"\npath = "/srv/x"\n')
    env = {"GRAPHCONDA_SERVER__PORT": "9100", "GRAPHCONDA_AUTH__ADMINS": '["github:alice"]'}
    settings = load_settings(config, environ=env, overrides={"server": {"host": "127.0.0.2"}})
    assert settings.server.port == 9100
    assert settings.server.host == "127.0.0.2"
    assert settings.auth.admins == ["github:alice"]
    assert settings.storage_path == Path("/srv/x")


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nport = 8123\n")
    assert load_settings(environ={"GRAPHCONDA_CONFIG": str(config)}).server.port == 8123


@pytest.mark.parametrize(
    ("text", "env", "fragment"),
    [
        ("[server]\nprot = 1\n", {}, "unknown setting 'server.prot'"),
        ("[nonsense]\nx = 1\n", {}, "unknown setting 'nonsense'"),
        ("[server\nport = 1\n", {}, "is not valid TOML"),
        ("[server]\nport = 'eighty'\n", {}, "invalid setting 'server.port'"),
        ("[server]\nport = 70000\n", {}, "invalid setting 'server.port'"),
        ('[storage]\nbackend = "ftp"\n', {}, "invalid setting 'storage.backend'"),
        ('[storage]\nbackend = "s3"\n', {}, "storage.s3.endpoint is required"),
        ("", {"GRAPHCONDA_DATABASE__URLL": "x"}, "unknown setting 'database.urll'"),
        ('[database]\nurl = "notaurl"\n', {}, "invalid setting 'database.url': use one of postgresql+asyncpg"),
        ("", {"GRAPHCONDA_DATABASE__URL": "mysql://db/x"}, "invalid setting 'database.url'"),
        ("", {"GRAPHCONDA_DATABASE__URL": "sqlite:///x.db"}, "not sqlite://"),
        ("[server]\nworkers = 0\n", {}, "invalid setting 'server.workers'"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, env: dict[str, str], fragment: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ=env)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_example_config_is_valid_and_complete() -> None:
    """config.example.toml documents every setting, with its default value."""
    example = load_settings(ROOT / "config.example.toml", environ={})
    defaults = load_settings(environ={})
    assert example.model_dump(exclude={"auth": {"providers"}}) == defaults.model_dump(exclude={"auth": {"providers"}})


def test_example_config_mentions_every_key() -> None:
    from pydantic import BaseModel

    from graphconda.settings import Settings

    text = (ROOT / "config.example.toml").read_text()

    def keys(model: type[BaseModel], prefix: str) -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                assert f"[{prefix}{name}]" in text, f"section [{prefix}{name}] missing from config.example.toml"
                out += keys(sub, f"{prefix}{name}.")
            elif prefix:
                out.append(f"{prefix}{name}")
        return out

    missing = [k for k in keys(Settings, "") if f"{k.rsplit('.', 1)[1]} =" not in text and f"[{k}." not in text]
    assert not missing, f"undocumented settings: {missing}"
