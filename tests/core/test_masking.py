from typing import Any

from crm_admin.core.masking import is_masked, mask_email, mask_id_number, mask_phone, mask_text


def test_phones_keep_what_tells_two_numbers_apart_and_nothing_usable() -> None:
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("+86 138 1234 5678") == "+86 138 **** 5678"
    assert mask_phone("010-87654321") == "010-****4321"
    assert mask_phone("0755-1234567") == "0755-****4567"
    assert mask_phone("87654321") == "****4321"
    assert mask_phone("") == "" and mask_phone(None) is None


def test_other_personal_values() -> None:
    assert mask_email("zhang@example.com") == "z***@example.com"
    assert mask_id_number("110101199003071234") == "110***********1234"
    assert mask_text("广东省深圳市南山区科技园1号") == "广东省深圳市****"
    assert is_masked(mask_phone("13812341234")) and not is_masked("13812341234")


def test_without_the_permission_every_customer_is_masked_and_rules_add_to_it(monkeypatch: Any) -> None:
    from crm_admin.core import masking
    from crm_admin.core.principal import Principal

    def someone(user_id: int, permissions: frozenset[tuple[str, str]]) -> Principal:
        return Principal(id=user_id, username=f"u{user_id}", real_name="", dept_id=None, roles=frozenset(),
                         scope="self", permissions=permissions, visible_user_ids=frozenset({user_id}))

    monkeypatch.setattr(masking, "_RULES", [])  # only the rule below (modules register theirs)
    holder = someone(1, frozenset({masking.SENSITIVE_PERMISSION}))
    other = someone(2, frozenset())
    assert masking.customers_masked_for(None, other, [1, 2]) == {1, 2}
    assert masking.customers_masked_for(None, holder, [1, 2]) == set()

    def odd_ones(session: object, principal: Principal, ids: object) -> set[int]:
        return {i for i in ids if i % 2}  # type: ignore[attr-defined]

    masking.register_customer_rule(odd_ones)
    assert masking.customers_masked_for(None, holder, [1, 2, 3]) == {1, 3}
