"""Notifications (通知): the in-app notification centre, delivery channels (e-mail, WeCom, DingTalk,
Feishu) per user and per department, and the outbox the scheduler delivers from."""
