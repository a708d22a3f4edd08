from __future__ import annotations

import random

import pytest

from crm_admin.core.errors import UserError
from crm_admin.customers.codes import (
    credit_code_check_char,
    credit_code_error,
    is_valid_credit_code,
    make_credit_code,
    normalize_credit_code,
    org_code_check_char,
    validate_credit_code,
)

# Published codes of well-known companies (public registration data).
REAL_CODES = [
    "91350100M000100Y43",
    "914403001922038216",
    "91330100716105852F",
    "91110000802100433B",
    "911100007109288314",
]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_codes_are_valid(code: str) -> None:
    assert is_valid_credit_code(code)
    assert credit_code_check_char(code[:17]) == code[17]
    # The embedded organisation code carries its own GB 11714 check character.
    assert org_code_check_char(code[8:16]) == code[16]


@pytest.mark.parametrize("code", REAL_CODES)
def test_any_single_changed_character_is_caught(code: str) -> None:
    for pos in range(18):
        for ch in "0123456789ABCDEFGHJKLMNPQRTUWXY":
            if ch == code[pos]:
                continue
            mutated = code[:pos] + ch + code[pos + 1:]
            if mutated[2:8].isdigit():
                assert not is_valid_credit_code(mutated), mutated


def test_normalisation_of_pasted_input() -> None:
    assert normalize_credit_code(" ９１３５０１００ｍ０００１００ｙ４３ ") == "91350100M000100Y43"
    assert normalize_credit_code("9135-0100-M000100Y43") == "91350100M000100Y43"
    assert validate_credit_code("91350100m000100y43") == "91350100M000100Y43"
    assert normalize_credit_code(None) == ""


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "不能为空"),
        ("9135010", "18 位"),
        ("91350100M000100YO3", "不允许的字符"),
        ("91A50100M000100Y43", "行政区划"),
        ("91350100M000100Y44", "校验位"),
    ],
)
def test_errors_are_clear_chinese(raw: str, fragment: str) -> None:
    message = credit_code_error(raw)
    assert message and fragment in message
    with pytest.raises(UserError) as info:
        validate_credit_code(raw)
    assert info.value.field == "credit_code"


def test_generated_codes_are_valid_and_reproducible() -> None:
    rng = random.Random(7)
    codes = [make_credit_code(rng) for _ in range(500)]
    assert all(is_valid_credit_code(c) for c in codes)
    assert all(c.startswith("91") for c in codes)
    assert len(set(codes)) == 500
    assert make_credit_code(random.Random(1), region="上海")[2:8] == "310115"
    assert make_credit_code(random.Random(7)) == codes[0]
