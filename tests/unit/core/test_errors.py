"""The error hierarchy: one base, a stable code and HTTP status per failure."""

from __future__ import annotations

import re

import pytest

import core.errors as errors

SUBCLASSES = [cls for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, errors.MarketrayError)
              and cls is not errors.MarketrayError]


def test_every_error_has_a_snake_case_code_and_an_http_error_status() -> None:
    assert SUBCLASSES
    for cls in SUBCLASSES:
        assert re.fullmatch(r"[a-z]+(?:_[a-z]+)*", cls.code), cls
        assert 400 <= cls.status <= 599, cls


def test_codes_are_unique_so_clients_can_branch_on_them() -> None:
    codes = [cls.code for cls in SUBCLASSES]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", [c for c in SUBCLASSES if c is not errors.RateLimited],
                         ids=lambda cls: cls.__name__)
def test_an_instance_can_carry_a_narrower_code_without_changing_its_class(cls: type) -> None:
    plain, narrowed = cls("why"), cls("why", code="more_precise")

    assert (plain.message, plain.code) == ("why", cls.code)
    assert narrowed.code == "more_precise"
    assert cls.code != "more_precise"
    assert isinstance(narrowed, errors.MarketrayError)


def test_rate_limited_carries_its_wait() -> None:
    error = errors.RateLimited("slow down", retry_after=2.5)

    assert (error.message, error.code, error.status, error.retry_after) == (
        "slow down", "rate_limited", 429, 2.5)
