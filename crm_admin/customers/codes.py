"""统一社会信用代码 (unified social credit code, GB 32100-2015): check digit, validation, generation.

Layout of the 18 characters: 1 registering authority (登记管理部门), 1 organisation kind (机构类别),
6 administrative division (行政区划码), 9 organisation code (组织机构代码, itself carrying a GB 11714
check character in its last place), 1 check character over the first 17.

The alphabet leaves out I, O, S, V and Z so they cannot be mistaken for 1, 0, 5, U and 2.
"""

from __future__ import annotations

import random
import unicodedata

from crm_admin.core.errors import UserError

CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_LENGTH = 18
_VALUE = {ch: i for i, ch in enumerate(CREDIT_CODE_CHARS)}
# Weight of position i is 3**i mod 31 (GB 32100-2015, table 2).
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# GB 11714 organisation code: 8 body characters weighted, check = 11 - sum mod 11 (10 → X, 11 → 0).
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# Common first-two-character prefixes: 91 企业, 92 个体工商户, 93 农民专业合作社, 11 机关, 12 事业单位,
# 51 社会团体, 52 民办非企业单位, 53 基金会, Y1 其他.
COMPANY_PREFIX = "91"

# A few real administrative division codes (province capitals and large cities) for generated codes.
REGION_CODES = {
    "北京": "110105",
    "上海": "310115",
    "广州": "440106",
    "深圳": "440305",
    "杭州": "330106",
    "南京": "320102",
    "苏州": "320505",
    "成都": "510107",
    "武汉": "420106",
    "西安": "610113",
    "天津": "120116",
    "重庆": "500112",
}


def normalize_credit_code(raw: str | None) -> str:
    """Upper-case, full-width folded, spaces and dashes removed (what users paste from Excel or PDFs)."""
    if not raw:
        return ""
    text = unicodedata.normalize("NFKC", raw)
    return "".join(ch for ch in text if not ch.isspace() and ch != "-").upper()


def credit_code_check_char(first17: str) -> str:
    """The 18th character for the given first 17 (which must use the GB 32100 alphabet)."""
    if len(first17) != CREDIT_CODE_LENGTH - 1:
        raise ValueError("需要 17 位前缀")
    try:
        total = sum(_VALUE[ch] * w for ch, w in zip(first17, _WEIGHTS, strict=True))
    except KeyError as exc:
        raise ValueError(f"非法字符 {exc.args[0]!r}") from None
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def credit_code_error(raw: str | None) -> str | None:
    """Why the code is not a valid 统一社会信用代码 (Chinese, for the user), or None if it is valid."""
    code = normalize_credit_code(raw)
    if not code:
        return "统一社会信用代码不能为空。"
    if len(code) != CREDIT_CODE_LENGTH:
        return f"统一社会信用代码应为 18 位,当前为 {len(code)} 位。"
    bad = sorted({ch for ch in code if ch not in _VALUE})
    if bad:
        return f"统一社会信用代码含有不允许的字符:{''.join(bad)}(不使用 I、O、S、V、Z)。"
    if not code[2:8].isdigit():
        return "统一社会信用代码第 3–8 位应为行政区划代码(数字)。"
    if credit_code_check_char(code[:17]) != code[17]:
        return "统一社会信用代码校验位不正确,请核对后重新输入。"
    return None


def is_valid_credit_code(raw: str | None) -> bool:
    return credit_code_error(raw) is None


def validate_credit_code(raw: str | None, *, field: str = "credit_code") -> str:
    """The normalised code, or a ``UserError`` with a clear Chinese message."""
    problem = credit_code_error(raw)
    if problem:
        raise UserError(problem, field=field)
    return normalize_credit_code(raw)


def org_code_check_char(first8: str) -> str:
    """GB 11714 check character of an organisation code body (8 digits/letters)."""
    def value(ch: str) -> int:
        return int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10

    c = 11 - sum(value(ch) * w for ch, w in zip(first8, _ORG_WEIGHTS, strict=True)) % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def make_credit_code(rng: random.Random | None = None, *, region: str | None = None,
                     prefix: str = COMPANY_PREFIX) -> str:
    """A well-formed code (valid check characters) for demo data and tests; not a real registration."""
    rng = rng or random.Random()
    division = REGION_CODES.get(region or "") or rng.choice(list(REGION_CODES.values()))
    body = "".join(rng.choice("0123456789") for _ in range(8))
    check = org_code_check_char(body)
    first17 = prefix + division + body + check
    return first17 + credit_code_check_char(first17)
