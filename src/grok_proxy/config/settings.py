"""The settings of grok-proxy: groups by plane, read once from flat environment variables.

Deployments name each setting by its variable (`XAI_READ_TIMEOUT`, in the environment or
`.env`), and so may tests (`Settings(xai_read_timeout=5)`); `FlatNames` puts each value in
its group, so the code reads `settings.upstream.read_timeout`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from grok_proxy.config.groups import (
    AccessSettings,
    CallSettings,
    Group,
    LimitSettings,
    LogSettings,
    RetrySettings,
    ServingSettings,
    TeamSettings,
    UpstreamSettings,
)


class Settings(BaseSettings):
    """Every setting, in groups by plane; each is read from its own environment variable."""

    # hide_input_in_errors: a configuration error must not print the values (keys) it read.
    # extra="ignore": flat keywords (`Settings(xai_base_url=...)`) are checked by FlatNames,
    # which refuses unknown ones; the model itself only ever sees its groups.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    serving: ServingSettings = Field(default_factory=ServingSettings, title="Serving")
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings, title="Upstream")
    retry: RetrySettings = Field(default_factory=RetrySettings, title="Retries")
    calls: CallSettings = Field(default_factory=CallSettings, title="Calls")
    limits: LimitSettings = Field(default_factory=LimitSettings, title="Limits")
    access: AccessSettings = Field(default_factory=AccessSettings, title="Access")
    teams: TeamSettings = Field(default_factory=TeamSettings, title="Teams")
    logs: LogSettings = Field(default_factory=LogSettings, title="Logs")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Same order as pydantic-settings' own: keywords, then the environment, then `.env`.
        assert isinstance(init_settings, InitSettingsSource)
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, EnvSettingsSource)  # a DotEnvSettingsSource
        return (
            FlatNames(settings_cls, init_settings.init_kwargs, keywords=True),
            FlatNames(settings_cls, env_settings.env_vars),
            FlatNames(settings_cls, dotenv_settings.env_vars),
        )


@cache
def groups() -> dict[str, type[Group]]:
    """Each group's attribute on Settings and its model, in the order of the docs."""
    found: dict[str, type[Group]] = {}
    for name, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type)
        assert issubclass(field.annotation, Group)
        found[name] = field.annotation
    return found


@cache
def variables() -> dict[str, tuple[str, str]]:
    """Each variable (`XAI_READ_TIMEOUT`) with its group and field (`upstream`, `read_timeout`)."""
    return {
        variable_of(field): (group, name)
        for group, model in groups().items()
        for name, field in model.model_fields.items()
    }


def variable_of(field: FieldInfo) -> str:
    """The environment variable a group's field is read from."""
    assert isinstance(field.validation_alias, str)
    return field.validation_alias


class FlatNames(PydanticBaseSettingsSource):
    """Values under flat names (`XAI_READ_TIMEOUT`, any case), put in their groups.

    From the environment or `.env`, other names are not settings and are skipped; as
    keywords of `Settings(...)`, an unknown name is a mistake and is refused.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        values: Mapping[str, Any],
        *,
        keywords: bool = False,
    ) -> None:
        super().__init__(settings_cls)
        self.values = values
        self.keywords = keywords

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every group at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        places = variables()
        grouped: dict[str, Any] = {}
        for name, value in self.values.items():
            place = places.get(name.upper())
            if place is not None:
                group, _ = place
                grouped.setdefault(group, {})[name.upper()] = value
            elif self.keywords and name in groups():
                grouped[name] = value  # a whole group: Settings(upstream=UpstreamSettings(...))
            elif self.keywords:
                raise TypeError(f"Settings has no setting named {name!r}")
        return grouped


def explain(error: ValidationError) -> str:
    """What is wrong with the settings in one line, naming variables but never their values."""
    problems = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        message = problem["msg"].removeprefix("Value error, ")
        # The first part of a place is the group (`upstream`): users know the variable only.
        place = problem["loc"]
        if place and place[0] in groups():
            place = place[1:]
        names = ".".join(str(part) for part in place)
        problems.append(f"{names}: {message}" if names else message)
    return "; ".join(problems)


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings()
