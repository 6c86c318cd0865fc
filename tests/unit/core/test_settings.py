import os
import stat

import pytest
from pydantic import ValidationError

from core.settings import Settings, normalize_symbol


def test_symbols_from_comma_list_are_normalised_and_deduplicated(monkeypatch):
    monkeypatch.setenv("MARKETRAY_SYMBOLS", "aapl, MSFT,aapl,brk.b")
    assert Settings().symbols == ("AAPL", "MSFT", "BRK.B")


@pytest.mark.parametrize("bad", ["", "1ABC", "TOO-LONG-SYMBOL", "A B", "$AAPL"])
def test_invalid_symbol_is_rejected(bad):
    with pytest.raises(ValueError, match="symbol"):
        normalize_symbol(bad)


def test_invalid_port_fails_with_clear_error(monkeypatch):
    monkeypatch.setenv("MARKETRAY_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_unknown_feed_is_rejected(monkeypatch):
    monkeypatch.setenv("MARKETRAY_FEED", "bloomberg")
    with pytest.raises(ValidationError, match="feed"):
        Settings()


def test_placeholder_secret_rejected_in_production():
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(environment="production", secret_key="changethis")
    assert Settings(environment="development", secret_key="changethis").secret_key


def test_generated_secret_is_private_and_stable(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first, generated = settings.resolved_secret()
    second, generated_again = settings.resolved_secret()
    assert generated
    assert not generated_again
    assert first == second
    assert len(first) >= 32
    mode = stat.S_IMODE(os.stat(tmp_path / "secret.key").st_mode)
    assert mode == 0o600


def test_json_payload_rebuilds_settings_with_real_secrets_but_repr_masks():
    settings = Settings(secret_key="k" * 40, alpaca_key_id="key-id", alpaca_secret_key="shh")
    rebuilt = Settings(**settings.model_dump(mode="json"))
    assert rebuilt.resolved_secret() == ("k" * 40, False)
    assert rebuilt.alpaca_secret_key.get_secret_value() == "shh"
    assert "shh" not in repr(settings)


def test_shard_count_unset_is_one_per_thousand_symbols() -> None:
    few = Settings(symbols="AAPL,MSFT,NVDA")
    many = Settings(symbols=",".join(f"S{i:04d}" for i in range(2_500)))

    assert few.num_shards == 1
    assert many.num_shards == 3


def test_shard_count_set_explicitly_is_kept_and_survives_a_json_round_trip() -> None:
    settings = Settings(symbols="AAPL,MSFT,NVDA", num_shards=2)

    rebuilt = Settings(**settings.model_dump(mode="json"))

    assert settings.num_shards == rebuilt.num_shards == 2
