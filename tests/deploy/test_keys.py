"""Endpoint keys: generated and kept 0600 in the state directory, or taken from the declared host variable (only its
hash kept); a rotation makes both valid, then only the new one."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mlops.deploy.keys import add_key, check_exposure, ensure_keys, keep_newest, key_hash, read_keys
from mlops.errors import DeployError


def test_a_generated_key_is_kept_0600_and_stays_the_same(tmp_path: Path) -> None:
    keys = ensure_keys(tmp_path, {})
    assert len(keys) == 1 and keys[0].value and key_hash(keys[0].value) == keys[0].sha256
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    assert ensure_keys(tmp_path, {}) == keys


def test_auth_none_has_no_keys(tmp_path: Path) -> None:
    assert ensure_keys(tmp_path, {"auth": {"mode": "none"}}) == []
    assert not (tmp_path / "keys.json").exists()


def test_the_declared_host_variable_gives_the_key_and_its_value_is_not_kept(tmp_path: Path) -> None:
    settings = {"auth": {"mode": "key", "secret": "WINE_KEY"}}
    with pytest.raises(DeployError, match="WINE_KEY, which is not set"):
        ensure_keys(tmp_path, settings, {})
    keys = ensure_keys(tmp_path, settings, {"WINE_KEY": "s3cret-value-123"})
    assert keys[0].sha256 == key_hash("s3cret-value-123") and keys[0].value is None
    assert "s3cret-value-123" not in (tmp_path / "keys.json").read_text()


def test_rotation_adds_then_keeps_only_the_newest(tmp_path: Path) -> None:
    old = ensure_keys(tmp_path, {})[0]
    new = add_key(tmp_path)
    assert [k.sha256 for k in read_keys(tmp_path)] == [old.sha256, new.sha256]
    keep_newest(tmp_path)
    assert read_keys(tmp_path) == [new]


def test_a_damaged_keys_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [{"sha256": "0" * 64, "source": "generated",
                                                              "created": "x", "value": "not-that"}]}))
    with pytest.raises(DeployError, match="keys.json is damaged"):
        read_keys(tmp_path)


@pytest.mark.parametrize(("serving", "auth", "environ", "refused"), [
    ({"host": "0.0.0.0"}, {"mode": "none"}, {}, True),
    ({"host": "192.168.1.5"}, {"mode": "none"}, {}, True),
    ({"host": "::"}, {"mode": "none"}, {}, True),
    ({"host": "0.0.0.0"}, {"mode": "none"}, {"MLOPS_ALLOW_OPEN_ENDPOINTS": "1"}, False),  # the operator's call
    ({"host": "0.0.0.0"}, {"mode": "key"}, {}, False),
    ({"host": "0.0.0.0"}, {}, {}, False),  # key is the default
    ({"host": "127.0.0.2"}, {"mode": "none"}, {}, False),
    ({"host": "::1"}, {"mode": "none"}, {}, False),
    ({}, {"mode": "none"}, {}, False),  # 127.0.0.1 unless told otherwise
])
def test_an_open_endpoint_beyond_loopback_needs_the_operator(serving: dict[str, str], auth: dict[str, str],
                                                            environ: dict[str, str], refused: bool) -> None:
    """A pull request can change specs: it cannot expose an endpoint without a key to the network."""
    settings = {"serving": serving, "auth": auth}
    if refused:
        with pytest.raises(DeployError, match="MLOPS_ALLOW_OPEN_ENDPOINTS=1"):
            check_exposure("wine", settings, environ)
    else:
        check_exposure("wine", settings, environ)
