"""Settings: one schema, read from vidbox.toml and ``VIDBOX_*`` environment variables.

Every setting is a field of a frozen dataclass below. Its metadata carries the help text and
the checks, so the dataclasses *are* the schema: loading, validation, ``vidbox.toml.example``
and ``vidbox check`` all read them, and nothing else lists the settings again.

Precedence, lowest first: built-in defaults, the TOML file, ``VIDBOX_<SECTION>__<KEY>``
environment variables. A secret may also come from ``VIDBOX_<SECTION>__<KEY>_FILE`` (a path whose
content is the value), which is how container secrets are usually mounted.
"""

from vidbox.config.example import render_example
from vidbox.config.loading import check_cross_field, default_data_dir, load_settings
from vidbox.config.schema import (
    ENV_PREFIX,
    SECTIONS,
    AuthSettings,
    ConfigError,
    DatabaseSettings,
    EmailSettings,
    GiB,
    ProcessingSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    UploadSettings,
    option,
)

__all__ = [
    "ENV_PREFIX",
    "SECTIONS",
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "EmailSettings",
    "GiB",
    "ProcessingSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "UploadSettings",
    "check_cross_field",
    "default_data_dir",
    "load_settings",
    "option",
    "render_example",
]
