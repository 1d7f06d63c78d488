from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vidbox.config import (
    SECTIONS,
    ConfigError,
    GiB,
    Settings,
    default_data_dir,
    load_settings,
    render_example,
)

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, environ={})
    assert s.server.port == 8080
    assert s.storage.backend == "local"
    assert s.uploads.max_bytes == 2 * GiB
    assert s.auth.registration == "closed"
    assert s.processing.renditions == ["360p", "480p", "720p", "1080p"]
    assert s.database_path == tmp_path / "vidbox.db"
    assert s.media_dir == tmp_path / "media"
    assert s.sources == ("defaults only",)
    assert not s.email_enabled


def test_data_dir_follows_xdg_and_env(tmp_path: Path) -> None:
    assert default_data_dir({"XDG_DATA_HOME": "/srv/x"}) == Path("/srv/x/vidbox")
    s = load_settings(environ={"VIDBOX_DATA_DIR": str(tmp_path / "d")})
    assert s.data_dir == tmp_path / "d"
    s = load_settings(environ={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert s.data_dir == tmp_path / "xdg" / "vidbox"


def test_file_then_environment_override(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "vidbox.toml",
        '[server]\nport = 9000\nhost = "0.0.0.0"\n[processing]\nrenditions = ["360p"]\n',
    )
    s = load_settings(config_file=cfg, data_dir=tmp_path, environ={})
    assert (s.server.port, s.server.host, s.processing.renditions) == (9000, "0.0.0.0", ["360p"])
    assert s.sources == (f"file {cfg}",)

    env = {
        "VIDBOX_CONFIG": str(cfg),
        "VIDBOX_SERVER__PORT": "9100",
        "VIDBOX_STORAGE__SECURE": "no",
        "VIDBOX_PROCESSING__RENDITIONS": "480p, 720p",
    }
    s = load_settings(data_dir=tmp_path, environ=env)
    assert s.server.port == 9100
    assert s.server.host == "0.0.0.0"
    assert s.storage.secure is False
    assert s.processing.renditions == ["480p", "720p"]
    assert s.sources[0] == f"file {cfg}"
    assert "VIDBOX_SERVER__PORT" in s.sources[1]


def test_secret_from_file(tmp_path: Path) -> None:
    secret = write(tmp_path / "pw", "s3cret-value\n")
    s = load_settings(data_dir=tmp_path, environ={"VIDBOX_EMAIL__PASSWORD_FILE": str(secret)})
    assert s.email.password == "s3cret-value"


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('[server]\nport = "not-a-port"\n', {}, "server.port: expected an integer"),
        ("[server]\nport = 70000\n", {}, "server.port: 70000 is above the maximum"),
        ('[storage]\nbackend = "ftp"\n', {}, "storage.backend: 'ftp' is not one of local, s3"),
        ("[server]\nprot = 1\n", {}, "server.prot: unknown setting"),
        ("[serverr]\n", {}, "serverr: unknown section"),
        ("[storage]\nsecure = 1\n", {}, "storage.secure: expected true or false"),
        ("", {"VIDBOX_SERVER__PORT": "eighty"}, "server.port: expected an integer"),
        ("", {"VIDBOX_SERVER__NOPE": "1"}, "no such setting server.nope"),
        ('[storage]\nbackend = "s3"\n', {}, "storage.endpoint: must be set"),
        ('[processing]\nrenditions = ["big"]\n', {}, "processing.renditions: 'big'"),
        ("port = [", {}, "is not valid TOML"),
        ('[uploads]\nallowed_formats = ["mp4", "exe"]\n', {}, "unknown format 'exe'"),
        ("", {"VIDBOX_UPLOADS__ALLOWED_FORMATS": '["mp4", "gif"]'}, "unknown format 'gif'"),
        ("", {"VIDBOX_UPLOADS__ALLOWED_FORMATS": '["mp4"'}, "expected a list of strings"),
        ("", {"VIDBOX_UPLOADS__ALLOWED_FORMATS": "[1, 2]"}, "expected a list of strings"),
    ],
)
def test_wrong_values_name_key_and_source(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    cfg = write(tmp_path / "vidbox.toml", toml)
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg, data_dir=tmp_path, environ=env)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    source = "VIDBOX_" if env else str(cfg)
    if "must be set" not in text and "TOML" not in text:
        assert source in text


PG_URL = "postgresql+asyncpg://vidbox@db.example.org/vidbox"


def test_postgres_needs_a_configured_secret_key_of_some_length(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings(data_dir=tmp_path, environ={"VIDBOX_DATABASE__URL": PG_URL})
    assert str(missing.value).startswith("server.secret_key: must be set when database.url")
    short = {"VIDBOX_DATABASE__URL": PG_URL, "VIDBOX_SERVER__SECRET_KEY": "short-key-value"}
    with pytest.raises(ConfigError) as too_short:
        load_settings(data_dir=tmp_path, environ=short)
    assert "server.secret_key: must be at least 32 characters" in str(too_short.value)
    assert "short-key-value" not in str(too_short.value)
    key_file = write(tmp_path / "key", "k" * 40 + "\n")
    from_file = {"VIDBOX_DATABASE__URL": PG_URL, "VIDBOX_SERVER__SECRET_KEY_FILE": str(key_file)}
    assert load_settings(data_dir=tmp_path, environ=from_file).server.secret_key == "k" * 40


def test_refused_without_a_secret_key_before_serving(tmp_path: Path) -> None:
    from tests.support import clean_env, run_cli

    env = clean_env(VIDBOX_DATA_DIR=str(tmp_path / "d"), VIDBOX_DATABASE__URL=PG_URL)
    env.pop("VIDBOX_SERVER__SECRET_KEY", None)
    refused = run_cli("serve", env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "Error: configuration error: server.secret_key: must be set when database.url is "
        "set, the same in every process of the box"
    )


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    cfg = write(tmp_path / "vidbox.toml", "[email]\npassword = 12345\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg, data_dir=tmp_path, environ={})
    assert "12345" not in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", data_dir=tmp_path, environ={})


def test_example_file_matches_schema() -> None:
    example = (REPO / "vidbox.toml.example").read_text()
    assert example == render_example(), "regenerate with: python -m vidbox.config > example"


def test_example_documents_every_key_with_its_default(tmp_path: Path) -> None:
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line else line
        for line in render_example().splitlines()
    )
    values = tomllib.loads(uncommented)
    assert set(values) == set(SECTIONS)
    cfg = write(tmp_path / "all.toml", uncommented)
    from_example = load_settings(config_file=cfg, data_dir=tmp_path, environ={})
    defaults = Settings(data_dir=tmp_path)
    for section in SECTIONS:
        assert getattr(from_example, section) == getattr(defaults, section)
        assert set(values[section]) == set(vars(getattr(defaults, section)))


@pytest.mark.parametrize(
    "raw", ["mp4,webm", " mp4 , webm ", '["mp4", "webm"]', "['mp4', 'webm']", '[ "mp4","webm", ]']
)
def test_lists_in_the_environment_are_words_or_arrays(tmp_path: Path, raw: str) -> None:
    settings = load_settings(data_dir=tmp_path, environ={"VIDBOX_UPLOADS__ALLOWED_FORMATS": raw})
    assert settings.uploads.allowed_formats == ["mp4", "webm"]
