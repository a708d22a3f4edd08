#!/usr/bin/env python3
"""官网“联系我们”表单的后端处理示例:把访客提交的内容经 REST API 写入客户信息管理系统。

只用 Python 标准库(urllib)。用法:

    export CRM_API_URL=https://crm.example.com/api/v1
    export CRM_API_TOKEN=crm_……            # 在“我的 API 令牌”页面创建,只显示一次
    python3 docs/website_form.py --company "杭州云杉科技有限公司" --name 王磊 \
        --mobile 13912345678 --message "想了解贵公司的产品报价" --submission-id web-20260101-0001

它依次:新建客户(来源默认“官网咨询”,参数 --source)、为客户新建联系人、记一条联系记录(留言内容)。
每次提交带 Idempotency-Key(由表单提交编号生成):网络抖动后重发同一次提交,不会重复建档。
客户名称疑似重复(同名、同电话、同信用代码)时,系统按与页面相同的规则拒绝,脚本打印原因并以退出码 2 结束,
由销售人员人工处理。
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail", ""))
        self.status = status
        self.problem = problem


def call(method: str, path: str, body: dict[str, Any] | None = None, *, key: str | None = None) -> dict[str, Any]:
    """One API call; a refusal (RFC 9457 problem details) raises ApiError."""
    base = os.environ["CRM_API_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ['CRM_API_TOKEN']}", "Accept": "application/json",
               "Accept-Language": "zh-CN"}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if key:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
        except ValueError:
            problem = {"detail": str(exc)}
        raise ApiError(exc.code, problem) from None


def handle_submission(form: dict[str, str], submission_id: str) -> dict[str, Any]:
    """The form's fields → a customer, its contact and a follow-up with the visitor's message."""
    customer = call("POST", "/customers", {
        "name": form["company"], "phone": form.get("phone") or None, "email": form.get("email") or None,
        "source": form.get("source") or None,
        "remark": f"官网表单提交({submission_id})",
    }, key=f"{submission_id}:customer")
    contact = call("POST", "/contacts", {
        "customer_id": customer["id"], "name": form["name"], "mobile": form.get("mobile") or None,
        "email": form.get("email") or None, "is_primary": True,
    }, key=f"{submission_id}:contact")
    follow_up = call("POST", "/follow-ups", {
        "customer_id": customer["id"], "linkman_id": contact["id"], "method": form.get("method", "other"),
        "content": form.get("message") or "官网表单留言",  # the time of contact: now, set by the system
    }, key=f"{submission_id}:follow-up")
    return {"customer": customer, "contact": contact, "follow_up": follow_up}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="官网表单 → 客户信息管理系统")
    parser.add_argument("--company", required=True, help="公司名称")
    parser.add_argument("--name", required=True, help="联系人姓名")
    parser.add_argument("--mobile", default="", help="手机")
    parser.add_argument("--phone", default="", help="公司电话")
    parser.add_argument("--email", default="", help="邮箱")
    parser.add_argument("--message", default="", help="留言")
    parser.add_argument("--source", default="website", help="客户来源(数据字典 customer_source 的值,默认 website 官网咨询)")
    parser.add_argument("--method", default="other", help="跟进方式(数据字典 follow_up_method 的值)")
    parser.add_argument("--submission-id", required=True, help="表单提交编号(重发同一提交时相同)")
    args = parser.parse_args(argv)
    try:
        result = handle_submission(vars(args), args.submission_id)
    except ApiError as exc:
        fields = ";".join(f"{e['field']}:{e['message']}" for e in exc.problem.get("errors", []))
        print(f"未写入({exc.status}):{exc.problem.get('detail', '')} {fields}".strip(), file=sys.stderr)
        return 2
    customer = result["customer"]
    print(json.dumps({"customer_id": customer["id"], "customer_code": customer["code"],
                      "contact_id": result["contact"]["id"], "follow_up_id": result["follow_up"]["id"]},
                     ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
