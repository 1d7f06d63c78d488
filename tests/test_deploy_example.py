"""deploy/compose.yaml, the README's several-process example, stays true to the settings
schema: every VIDBOX_* name in it is a setting (or its _FILE form), each vidbox process's
environment loads, and the processes agree where they must.

The file is read with PyYAML, which the test dependencies bring (moto needs it, through
responses); vidbox itself reads no YAML."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vidbox.config import SECTIONS, Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
# VIDBOX_ names that are not settings of a section: where the data and the config file are.
OUTSIDE_SECTIONS = {"VIDBOX_DATA_DIR", "VIDBOX_CONFIG"}
# What every process of one box must agree on (README.md, "Several processes").
AGREED = (
    "database.url",
    "database.password",
    "server.secret_key",
    "server.base_url",
    "storage.backend",
    "storage.endpoint",
    "storage.bucket",
    "storage.access_key",
    "storage.secret_key",
    "storage.region",
    "storage.secure",
    "email.host",
    "email.from_address",
)


def _setting_names() -> set[str]:
    names = set(OUTSIDE_SECTIONS)
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            name = f"VIDBOX_{section.upper()}__{f.name.upper()}"
            names.add(name)
            if f.metadata["secret"]:
                names.add(name + "_FILE")
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _vidbox_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "vidbox"
    }


def _role(service: dict[str, Any]) -> str:
    command = service["command"]
    return command[command.index("--role") + 1] if "--role" in command else "-"


def test_every_vidbox_variable_named_in_the_example_is_a_setting() -> None:
    # Comments too: a commented-out line is what someone will uncomment.
    text = (DEPLOY / "compose.yaml").read_text()
    named = set(re.findall(r"\bVIDBOX_[A-Z0-9_]+", text))
    assert "VIDBOX_UPLOADS__SPOOL_DIR" in named  # the scan sees the file's settings at all
    assert named - _setting_names() == set()


def test_the_example_runs_two_web_processes_and_two_workers_on_postgres_and_minio(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/")
    roles = sorted(_role(s) for s in _vidbox_services(compose).values())
    assert roles == ["-", "web", "web", "worker", "worker"]  # "-": vidbox db migrate
    for service in _vidbox_services(compose).values():
        # The role in the settings too, so that `vidbox check` in the container sees it.
        assert service["environment"].get("VIDBOX_SERVER__ROLE", "-") == _role(service)
    # Processes on one spool and one queue tell each other apart by host name and pid.
    serving = [s for s in _vidbox_services(compose).values() if _role(s) != "-"]
    assert len({s["hostname"] for s in serving}) == len(serving)
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    for name, service in _vidbox_services(compose).items():
        # The proxy sends to every web process and to nothing else.
        assert (f"{name}:8080" in caddyfile) == (_role(service) == "web"), name
    assert any("Caddyfile" in volume for volume in services["proxy"]["volumes"])


def _load(environment: dict[str, str], secrets: Path) -> Settings:
    """The settings a process of the example starts with, its /run/secrets files made here."""
    env = {}
    for name, value in environment.items():
        if name.endswith("_FILE") and str(value).startswith("/run/secrets/"):
            path = secrets / Path(value).name
            path.write_text("s3cr3t-" + "x" * 40 + "\n")
            value = str(path)
        env[name] = str(value)
    return load_settings(environ=env, data_dir=secrets / "data")


def test_every_process_of_the_example_loads_and_they_agree(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    loaded = {
        name: _load(service["environment"], tmp_path)
        for name, service in _vidbox_services(compose).items()
    }
    for key in AGREED:
        section, _, field = key.partition(".")
        values = {getattr(getattr(s, section), field) for s in loaded.values()}
        assert len(values) == 1, f"{key} differs between processes: {values}"
    first = next(iter(loaded.values()))
    assert first.database.url.startswith("postgresql+asyncpg://")
    assert first.storage.backend == "s3"
    web = [s for s in loaded.values() if s.server.role == "web"]
    assert len({s.spool_dir for s in web}) == 1  # one spool for every web process
    assert len(web) == 2
    for name, service in _vidbox_services(compose).items():
        if loaded[name].server.role == "web":
            assert any(v.endswith(f":{loaded[name].spool_dir}") for v in service["volumes"])
        # Each process has a data folder of its own.
        assert any(v.endswith(":/data") for v in service.get("volumes", [])) or name == "migrate"
    proxy_address = compose["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    for settings in web:
        assert settings.server.trusted_proxies == [proxy_address]


def test_the_caddyfile_is_one_caddy_reads() -> None:
    """Caddy's own parser, where Caddy is installed (Debian's `caddy`); `adapt` only turns
    the file into Caddy's JSON config: nothing listens, no certificate is asked for."""
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (apt-get install caddy)")
    adapted = subprocess.run(
        [caddy, "adapt", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert adapted.returncode == 0, adapted.stderr
    assert "warn" not in adapted.stderr.lower(), adapted.stderr
    proxy = json.loads(adapted.stdout)["apps"]["http"]["servers"]["srv0"]["routes"][0]
    handler = proxy["handle"][0]["routes"][0]["handle"][0]
    assert handler["handler"] == "reverse_proxy"
    assert [u["dial"] for u in handler["upstreams"]] == ["web-1:8080", "web-2:8080"]
    assert handler["health_checks"]["active"]["uri"] == "/healthz"
