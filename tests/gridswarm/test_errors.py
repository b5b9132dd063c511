"""One exception root (gridswarm.errors), mapped once by the CLI."""

from __future__ import annotations

import argparse

import pytest

from app import cli
from gridswarm.errors import GridSwarmError, UserError


def _roots() -> list[type[BaseException]]:
    from agent.config import ConfigError
    from agent.devices.spec import DeviceConfigError
    from agent.drivers.base import DriverError
    from agent.forecast.errors import ForecastError
    from app.compile import CompileError
    from app.demo import DemoError
    from app.devnet import DevnetError
    from coordinator.market._errors import ClearingError
    from coordinator.market.files import InputError
    from coordinator.preflight import StartupError
    from coordinator.settings import SettingsError
    from gridswarm.chain import ChainError
    from gridswarm.envelope import EnvelopeError
    from gridswarm.keys import KeyFileError

    return [ConfigError, DeviceConfigError, DriverError, ForecastError, ClearingError, InputError, StartupError,
            SettingsError, ChainError, CompileError, DemoError, DevnetError, EnvelopeError, KeyFileError]


def test_every_package_error_derives_from_the_one_root() -> None:
    assert all(issubclass(e, GridSwarmError) for e in _roots())


def test_errors_a_user_can_fix_are_user_errors_and_keep_their_standard_class() -> None:
    from agent.config import ConfigError
    from coordinator.settings import SettingsError
    from gridswarm.chain import ChainUnavailable
    from gridswarm.keys import KeyFileError

    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(SettingsError, UserError) and issubclass(KeyFileError, UserError)
    assert issubclass(ChainUnavailable, RuntimeError) and not issubclass(ChainUnavailable, UserError)


def test_the_cli_maps_the_root_once_to_one_line_and_exit_code_2(monkeypatch, capsys) -> None:
    def boom(_args: argparse.Namespace) -> int:
        raise UserError("field x: must be positive;\n  set it to 1 or more")

    real = argparse.ArgumentParser.parse_args

    def parse(self, argv=None):  # noqa: ANN001, ANN202
        ns = real(self, argv)
        ns.func = boom
        return ns

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    assert cli.main(["devnet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gridswarm: error: field x: must be positive; set it to 1 or more"]


def test_a_bug_is_not_hidden_by_the_cli(monkeypatch) -> None:
    def bug(_args: argparse.Namespace) -> int:
        raise ValueError("a bug, not a user error")

    real = argparse.ArgumentParser.parse_args

    def parse(self, argv=None):  # noqa: ANN001, ANN202
        ns = real(self, argv)
        ns.func = bug
        return ns

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["devnet"])
