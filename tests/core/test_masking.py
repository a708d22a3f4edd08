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
