"""Sending one message through one channel: e-mail (SMTP) and the group robots of WeCom, DingTalk and
Feishu. Each sender raises ``DeliveryError`` with a short reason on failure; the outbox records it.

Signatures, as each platform documents them:

- DingTalk (加签): ``string_to_sign = f"{timestamp}\\n{secret}"`` with the timestamp in milliseconds;
  ``sign = base64(HMAC-SHA256(key=secret, msg=string_to_sign))``, URL-encoded; both go in the query
  string as ``timestamp`` and ``sign``.
- Feishu / Lark (签名校验): ``string_to_sign = f"{timestamp}\\n{secret}"`` with the timestamp in
  seconds; ``sign = base64(HMAC-SHA256(key=string_to_sign, msg=b""))``; both go in the JSON body.
- WeCom (企业微信群机器人): no signature; the key is part of the webhook URL.

Webhook addresses may point into the intranet (WeCom and DingTalk exist on premises): only the scheme
is restricted (http/https). Who may enter one: a user for their own notifications, an administrator
for a department — see README (通知) for what that means for server-side requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from crm_admin.settings import Settings, get_settings


class DeliveryError(Exception):
    """A message that did not go out; ``str(exc)`` is the reason recorded on the outbox row."""


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    link: str = ""  # an absolute address, when known

    def text(self) -> str:
        parts = [self.subject, "", self.body]
        if self.link:
            parts += ["", self.link]
        return "\n".join(parts).strip()

    def markdown(self) -> str:
        out = f"**{self.subject}**\n\n{self.body}"
        if self.link:
            out += f"\n\n[{self.link}]({self.link})"
        return out


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    string_to_sign = f"{timestamp_s}\n{secret}".encode()
    digest = hmac.new(string_to_sign, b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _post_json(url: str, payload: Mapping[str, object], timeout: float) -> dict[str, object]:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryError("地址须以 http:// 或 https:// 开头。")
    request = urllib.request.Request(url, data=json.dumps(payload, ensure_ascii=False).encode(), method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        # the scheme was checked above (http/https only)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310
            raw = response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"对方服务器拒绝了消息(HTTP {exc.code})。") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"无法连接:{getattr(exc, 'reason', exc)}") from exc
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _check_answer(answer: dict[str, object]) -> None:
    """The robots answer 200 with an error code in the body (``errcode`` / ``code`` / ``StatusCode``)."""
    for key in ("errcode", "code", "StatusCode"):
        if key in answer and answer[key] not in (0, "0"):
            reason = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
            raise DeliveryError(f"{key}={answer[key]} {reason}".strip()[:500])


def send_wecom(url: str, message: Message, *, timeout: float) -> None:
    payload = {"msgtype": "markdown", "markdown": {"content": message.markdown()}}
    _check_answer(_post_json(url, payload, timeout))


def send_dingtalk(url: str, secret: str | None, message: Message, *, timeout: float,
                  now: float | None = None) -> None:
    if secret:
        timestamp = int((now if now is not None else time.time()) * 1000)
        extra = urllib.parse.urlencode({"timestamp": timestamp, "sign": dingtalk_sign(secret, timestamp)})
        url = f"{url}{'&' if urllib.parse.urlsplit(url).query else '?'}{extra}"
    payload = {"msgtype": "markdown", "markdown": {"title": message.subject, "text": message.markdown()}}
    _check_answer(_post_json(url, payload, timeout))


def send_feishu(url: str, secret: str | None, message: Message, *, timeout: float,
                now: float | None = None) -> None:
    payload: dict[str, object] = {"msg_type": "text", "content": {"text": message.text()}}
    if secret:
        timestamp = int(now if now is not None else time.time())
        payload = {"timestamp": str(timestamp), "sign": feishu_sign(secret, timestamp), **payload}
    _check_answer(_post_json(url, payload, timeout))


def send_email(address: str, message: Message, *, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if not settings.smtp_host:
        raise DeliveryError("未配置邮件服务器(CRM_SMTP_HOST)。")
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = settings.smtp_from or settings.smtp_user or "crm@localhost"
    mail["To"] = address
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid()
    mail.set_content(message.text())
    timeout = settings.notify_timeout_seconds
    try:
        smtp: smtplib.SMTP
        if settings.smtp_tls == "ssl":
            smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with smtp:
            if settings.smtp_tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(mail)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"邮件发送失败:{exc}"[:500]) from exc


def send(kind: str, address: str, secret: str | None, message: Message, *, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    timeout = float(settings.notify_timeout_seconds)
    if kind == "email":
        send_email(address, message, settings=settings)
    elif kind == "wecom":
        send_wecom(address, message, timeout=timeout)
    elif kind == "dingtalk":
        send_dingtalk(address, secret, message, timeout=timeout)
    elif kind == "feishu":
        send_feishu(address, secret, message, timeout=timeout)
    else:
        raise DeliveryError(f"未知的通知渠道:{kind}")
