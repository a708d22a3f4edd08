"""The search index's pieces: what a record is found by, how a typed text is read, what gets marked."""

from __future__ import annotations

from crm_admin.core import search
from crm_admin.customers.models import Customer


def _spec() -> search.Searchable:
    spec = search.searchable(Customer)
    assert spec is not None
    return spec


def test_a_name_is_found_by_its_characters_pinyin_initials_and_digits() -> None:
    body, grams = search.document(_spec(), {"name": "南京联华超市有限公司", "phone": "025-8345 6789",
                                            "code": "C2026110001"})
    assert "t:联华" in grams and f"t:司{search.END}" in grams
    assert "p:lian hua" in grams and "i:lh" in grams
    assert "d:8345" in grams and "d:5678" in grams and "d:0001" in grams
    assert "lianhua" in body and "njlhcs" in body and "02583456789" in body


def test_phrases_are_read_as_words() -> None:
    assert search.pinyin_units("重庆银行")[0] == ("chong", "qing", "yin", "hang")


def test_typed_letters_are_split_into_syllables_every_way() -> None:
    ways = search.split_pinyin("xian")
    assert ["xian"] in ways and ["xi", "an"] in ways
    assert ["lian", "hua"] in search.split_pinyin("lianhua")
    assert ["lian", "h"] in search.split_pinyin("lianh")  # the last syllable may be unfinished
    assert search.split_pinyin("zzz") == []


def test_marking_what_matched() -> None:
    assert search.highlight("南京联华超市", "联华") == "南京<mark>联华</mark>超市"
    assert search.highlight("南京联华超市", "lianhua") == "南京<mark>联华</mark>超市"
    assert search.highlight("南京联华超市", "lhcs") == "南京<mark>联华超市</mark>"
    assert search.highlight("138-1234-5678", "12345") == "138-<mark>1234-5</mark>678"
    assert search.highlight("<b>联华</b>", "联华") == "&lt;b&gt;<mark>联华</mark>&lt;/b&gt;"
    assert search.highlight("南京联华超市", "无关") == "南京联华超市"


def test_every_searchable_model_is_registered_by_its_module() -> None:
    names = {spec.model.__name__ for spec in search.registered()}
    assert {"Customer", "Linkman", "Product"} <= names
    assert len({spec.kind for spec in search.registered()}) == len(search.registered())


def test_spaces_and_full_width_letters_do_not_matter() -> None:
    _, grams = search.document(_spec(), {"name": "联华 超市 ＡＢＣ"})
    assert "t:华超" in grams and "t:ab" in grams
    assert search.normalise(" 联华  超市 ") == "联华超市"
