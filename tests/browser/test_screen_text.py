"""Every screen reads in the user's language: no codes, raw column names or Python values.

Each role walks every page it can open (tests/browser/walk.py) on the demo company, once in Chinese
(the walk of tests/browser/test_csp.py, which reads each screen as well) and once in English. A Chinese screen fails on a stored code or raw name shown as is (``following``,
``high``, ``customer_care``, ``run_job``, ``manager_id``, ``id 57``, ``None`` …); an English screen
fails on a Chinese interface word (a status, a dictionary label, "— 请选择 —") or a snake_case code.
The words come from the code base itself (tests/browser/screen_text.py), so a new status, action,
resource or column is covered without editing this test. What people typed (names, addresses,
e-mails, customer codes) is not a leak: a code must stand as a word of its own to count.
"""

from __future__ import annotations

import re
from typing import Any

from tests.browser import screen_text
from tests.browser.walk import (
    Site,
    Watch,
    for_each_role,
    open_as,
    walk_everything,
    with_own_browser,
)


def _walk_reading(role: str, locale: str, site: Site, live_server: str,
                  check: Any) -> Watch:
    def use(browser: Any) -> Watch:
        _context, page, watch = open_as(browser, live_server, role, locale=locale)

        def read(pg: Any, w: Watch) -> None:
            for leak in check(screen_text.visible_text(pg, locale)):
                w.problems.append(f"[{role}/{locale}] {w.where}: {leak}")

        walk_everything(page, watch, site, live_server, on_page=read)
        return watch

    return with_own_browser(use)


def _report(watches: dict[str, Watch]) -> str:
    problems = [p for w in watches.values() for p in w.problems]
    return "\n".join(dict.fromkeys(problems))


def test_the_code_words_are_read_from_the_code(app: Any) -> None:
    """The Chinese screens are read on the walk of tests/browser/test_csp.py (each page opened once
    for both checks); the words they must not show are read from the code, not typed."""
    pattern = screen_text.code_pattern(screen_text.codes(app))
    for code in ("following", "high", "potential", "customer_care", "run_job", "manager_id", "created_at"):
        assert pattern.search(f"状态 {code}"), code


def test_english_screens_show_no_chinese_words_or_codes(demo_data: Any, app: Any, live_server: str,
                                                        browser: Any) -> None:
    site = Site(app)
    pattern = screen_text.code_pattern(screen_text.codes(app))
    chinese = screen_text.chinese_words(app)
    assert {"跟进中", "高风险", "信息技术"} <= chinese

    watches = for_each_role(lambda role: _walk_reading(
        role, "en", site, live_server, lambda texts: screen_text.leaks_in_english(texts, pattern, chinese)))
    assert not _report(watches), _report(watches)
    assert all(len(w.visited) > 10 for w in watches.values())


def test_leak_detection_keeps_typed_data_apart() -> None:
    pattern = screen_text.code_pattern({"following", "manager_id", "email", "high"})
    assert screen_text.leaks_in_chinese(["状态:following", "manager_id 变更", "id 57", "None"], pattern)
    typed = ["li.ming@example.com", "www.high.cn", "C20260001", "data_email.xlsx", "跟进中"]
    assert screen_text.leaks_in_chinese(typed, pattern) == []
    assert len(screen_text.leaks_in_english(["— 请选择 —", "True", "manager_id", "None yet"], pattern,
                                            {"请选择"})) == 3
    assert not re.search(screen_text.RECORD_ID, "order-id-57")
