"""Chinese by default for everything SQLAdmin shows, English on request, and complete catalogs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from tests.conftest import csrf_token

SITE = Path(__import__("sqladmin").__file__).parent
TEMPLATES = Path(__file__).resolve().parents[2] / "crm_admin" / "templates"


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# ----- the catalogs ------------------------------------------------------------------------


def test_zh_catalog_translates_every_sqladmin_message() -> None:
    from crm_admin.core import i18n

    i18n.install()
    with (SITE / "translations" / "admin.pot").open("rb") as fh:
        pot = read_po(fh)
    zh = i18n.translations_for("zh")
    untranslated = [m.id for m in pot if m.id and zh.gettext(m.id) == m.id]
    assert not untranslated, untranslated
    assert zh.gettext("Save") == "保存"
    assert zh.gettext("Save and continue editing") == "保存并继续编辑"
    assert zh.gettext("Showing %(start)s to %(end)s of %(count)s items") % {
        "start": 1, "end": 20, "count": 35} == "第 1–20 条,共 35 条"


def test_zh_catalog_translates_every_wtforms_message() -> None:
    import wtforms

    from crm_admin.core import i18n

    i18n.install()
    pot_path = Path(wtforms.__file__).parent / "locale" / "wtforms.pot"
    with pot_path.open("rb") as fh:
        pot = read_po(fh)
    zh = i18n.translations_for("zh")
    missing = [m.id for m in pot if m.id and isinstance(m.id, str) and zh.gettext(m.id) == m.id]
    assert not missing, missing
    assert zh.gettext("This field is required.") == "此字段为必填项。"


def test_every_english_literal_in_our_templates_has_chinese() -> None:
    """SQLAdmin-style msgids (English) used in our template overrides must be in the zh catalog."""
    from crm_admin.core import i18n

    i18n.install()
    zh = i18n.translations_for("zh")
    call = re.compile(r"""(?<![\w.])_\(\s*(["'])((?:(?!\1).)*)\1""")
    missing = set()
    for path in TEMPLATES.rglob("*.html"):
        for match in call.finditer(path.read_text(encoding="utf-8")):
            text = match.group(2)
            if not re.search(r"[\u4e00-\u9fff]", text) and zh.gettext(text) == text:
                missing.add(f"{path.name}: {text}")
    assert not missing, sorted(missing)


def test_english_catalog_is_complete() -> None:
    """Every view name, category, column label and _("…") literal has an English translation.

    When this fails: run ``.venv/bin/python scripts/extract_messages.py --write`` and fill in the
    empty msgstr lines it appended to crm_admin/locale/en/LC_MESSAGES/<module>.po.
    """
    from crm_admin.web import catalog

    found = catalog.collect()
    assert len(found.locations) > 100  # the collector sees the views and templates
    missing = catalog.missing(found)
    report = "\n".join(
        f"  {text!r}  used at {', '.join(sorted(locs)[:2])}" for text, locs in sorted(missing.items())
    )
    assert not missing, (
        f"{len(missing)} Chinese text(s) have no English translation. Run "
        f"`.venv/bin/python scripts/extract_messages.py --write` and fill in the stubs:\n{report}"
    )


def test_collector_finds_labels_and_literals(tmp_path: Path) -> None:
    from crm_admin.web import catalog

    found = catalog.collect()
    assert "用户管理" in found.locations  # a view's name_plural
    assert "系统管理" in found.locations  # a category
    assert "部门名称" in found.locations  # a column label
    assert "暂无数据" in found.locations  # _("…") in our list template
    assert "ui" in found.modules_of("暂无数据")
    assert "accounts" in found.modules_of("用户管理")


def test_extract_messages_script_appends_stubs(tmp_path: Path, monkeypatch: Any) -> None:
    from crm_admin.web import catalog

    monkeypatch.setattr(catalog, "EN_DIR", tmp_path)
    written = catalog.append_stubs({"新的文字": {"customers:customers/admin.py:1"}})
    assert written == {"customers": 1}
    text = (tmp_path / "customers.po").read_text(encoding="utf-8")
    assert 'msgid "新的文字"' in text and 'msgstr ""' in text
    assert catalog.missing(catalog.Found(locations={"新的文字": {"customers:x"}})) == {
        "新的文字": {"customers:x"}}
    # a stub is not written twice
    assert catalog.append_stubs({"新的文字": {"customers:customers/admin.py:1"}}) == {}


# ----- pages: Chinese by default, English on request ------------------------------------


def test_login_page_is_chinese_whatever_the_browser_says(client: Any) -> None:
    r = client.get("/admin/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert r.status_code == 200
    assert '<html lang="zh-CN">' in r.text
    text = visible_text(r.text)
    assert "用户名" in text and "密码" in text and "登录" in text
    assert "<title>登录 - 客户信息管理系统</title>" in r.text
    for english in ("Login to", "Username", "Password", "Enter username"):
        assert english not in text


def test_lang_switch_to_english_persists_in_cookie(client: Any) -> None:
    r = client.get("/admin/login?lang=en")
    assert '<html lang="en">' in r.text
    assert "Username" in visible_text(r.text)
    assert "crm_lang=en" in r.headers.get("set-cookie", "")
    r = client.get("/admin/login")  # the cookie keeps it
    assert "Username" in visible_text(r.text)
    r = client.get("/admin/login?lang=zh")
    assert "用户名" in visible_text(r.text)


def test_list_page_is_chinese(admin_client: Any) -> None:
    r = admin_client.get("/admin/sys-dept/list")
    assert r.status_code == 200
    text = visible_text(r.text)
    for chinese in ("部门管理", "新建部门", "导出", "部门名称", "上级部门", "暂无数据", "系统管理", "退出登录",
                    "修改密码", "简体中文"):
        assert chinese in text, chinese
    for english in ("New ", "Export", "Actions", "Showing", "Logout", "Search:"):
        assert english not in text, english
    assert "<title>部门管理 - 客户信息管理系统</title>" in r.text


def test_list_page_in_english(admin_client: Any) -> None:
    r = admin_client.get("/admin/sys-dept/list?lang=en")
    text = visible_text(r.text)
    for english in ("Departments", "New Department", "Department name", "Parent department", "No records",
                    "System", "Users", "Change password", "Logout"):
        assert english in text, english
    for chinese in ("部门管理", "新建", "部门名称", "上级部门"):
        assert chinese not in text, chinese
    assert "English" in text and "简体中文" in text  # the switcher names both languages


def _refused_department(client: Any, name: str, sort: str, save: str) -> str:
    """The page shown again for a new department's form that does not validate."""
    r = client.post(
        "/admin/sys-dept/create",
        data={"name": name, "sort": sort, "csrf_token": csrf_token(client), "save": save},
    )
    assert r.status_code == 400
    return str(r.text)


def test_create_form_messages_are_chinese(admin_client: Any) -> None:
    assert "此字段为必填项。" in _refused_department(admin_client, "", "1", "保存")
    assert "请输入整数。" in _refused_department(admin_client, "销售一部", "abc", "保存")


def test_create_form_messages_in_english(admin_client: Any) -> None:
    admin_client.get("/admin/?lang=en")
    assert "This field is required." in _refused_department(admin_client, "", "1", "Save")


def test_save_buttons_work_with_chinese_labels(admin_client: Any) -> None:
    r = admin_client.get("/admin/sys-dept/create")
    for label in ("保存", "保存并继续编辑", "保存并新建下一条"):
        assert f'value="{label}"' in r.text
    r = admin_client.post(
        "/admin/sys-dept/create",
        data={"name": "销售二部", "sort": "1", "csrf_token": csrf_token(admin_client), "save": "保存并继续编辑"},
        follow_redirects=False,
    )
    assert r.status_code == 302
    assert "/admin/sys-dept/edit/" in r.headers["location"]


def test_error_pages_are_friendly_chinese(admin_client: Any) -> None:
    r = admin_client.get("/admin/sys-dept/details/999999")
    assert r.status_code == 404
    assert "记录不存在或您无权访问" in visible_text(r.text)
    r = admin_client.get("/admin/no-such-view/list")
    assert r.status_code == 404
    assert "记录不存在或您无权访问" in visible_text(r.text)
    assert "Not Found" not in visible_text(r.text)


def test_forbidden_page_is_chinese(make_user: Any, login_as: Any) -> None:
    make_user("ro_user", roles=("readonly",))
    c = login_as("ro_user")
    r = c.get("/admin/sys-user/list")
    assert r.status_code == 403
    text = visible_text(r.text)
    assert "您没有权限访问此页面" in text
    assert "Forbidden" not in text


def test_layout_shows_user_and_password_link(make_user: Any, login_as: Any) -> None:
    make_user("li_lei", roles=("manager",), real_name="李雷")
    c = login_as("li_lei")
    r = c.get("/admin/customer/list")
    assert r.status_code == 200
    assert "李雷" in visible_text(r.text)
    assert re.search(r'href="(http://testserver)?/admin/account/password"', r.text)


@pytest.mark.parametrize("path", ["/admin/login", "/admin/sys-dept/list", "/admin/sys-dept/create"])
def test_pages_load_no_remote_assets(admin_client: Any, path: str) -> None:
    html = admin_client.get(path).text
    for url in re.findall(r"""(?:src|href)=["']([^"']+)["']""", html):
        assert not re.match(r"(https?:)?//", url) or url.startswith("http://testserver/"), url


def test_no_template_or_static_file_loads_from_a_cdn() -> None:
    import crm_admin

    package = Path(crm_admin.__file__).parent
    remote = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//|@import\s+url\(\s*["']?https?:|fetch\(\s*["']https?:""")
    offenders = []
    for folder in (SITE / "templates", package / "templates", package / "static"):
        for path in folder.rglob("*"):
            if path.suffix in (".html", ".js", ".css") and "vendor" not in path.parts:
                if path.name.endswith(".min.js"):
                    continue
                if remote.search(path.read_text(encoding="utf-8", errors="replace")):
                    offenders.append(str(path))
    assert not offenders, offenders


def test_locale_default_outside_a_request_is_chinese() -> None:
    from crm_admin.core import i18n

    i18n.install()
    assert i18n.current_locale() == "zh"
    assert i18n.gettext("Save") == "保存"
    assert i18n.gettext("用户管理") == "用户管理"
    assert i18n.translations_for("en").gettext("用户管理") == "Users"


def test_no_view_uses_a_cdn_hosted_rich_text_editor() -> None:
    """SQLAdmin's rich-text editors (CKEditor, TinyMCE, Quill, Summernote, JSONEditor) load from CDNs."""
    import crm_admin

    package = Path(crm_admin.__file__).parent
    users = [str(p) for p in package.rglob("*.py")
             if re.search(r"sqladmin\.editors|from sqladmin import .*Editor", p.read_text(encoding="utf-8"))]
    assert not users, users


def test_details_page_title_names_the_record(admin_client: Any) -> None:
    import datetime as dt

    from crm_admin import db
    from crm_admin.core.context import SYSTEM, acting_as
    from crm_admin.scheduler.models import JobRun

    with acting_as(SYSTEM), db.transaction() as s:
        run = JobRun(job="birthday_scan", started_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), status="ok")
        s.add(run)
        s.flush()
        pk = run.id
    html = admin_client.get(f"/admin/job-run/details/{pk}").text
    assert f":<span data-user-text>#{pk}</span></h3>" in html.replace("\n", "").replace("  ", "")
    assert " object at 0x" not in html
    text = visible_text(html)
    assert "字段" in text and "值" in text and "返回" in text
