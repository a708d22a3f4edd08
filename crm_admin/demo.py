"""Realistic Chinese demo data (``crm-admin demo``): enough that every screen shows something real.

Written through the models (so every row is audited like a user's change) and the business services
where they exist (customer codes, birthday scan, transfers). Reproducible for a given seed; refuses to
run on a database that already holds customers, so it can never mix with real data.
"""

from __future__ import annotations

import datetime as dt
import importlib
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_admin.accounts.models import SysDept, SysUser
from crm_admin.accounts.service import create_user
from crm_admin.care.models import CarePlan, CustomerCare
from crm_admin.churn.models import ChurnAlert, ChurnRule
from crm_admin.contacts.models import Linkman
from crm_admin.core.errors import UserError
from crm_admin.core.formatting import company_tz, local_today
from crm_admin.core.principal import load_principal
from crm_admin.customers.codes import make_credit_code
from crm_admin.customers.models import Customer
from crm_admin.db import utcnow
from crm_admin.followups.models import FollowUp
from crm_admin.followups.service import log_follow_up
from crm_admin.opportunities.models import SalesOpportunity
from crm_admin.orders.models import CustomerOrder, OrderItem
from crm_admin.orders.service import next_order_no
from crm_admin.products.models import Product
from crm_admin.transfers.models import CustomerTransfer

DEMO_CUSTOMERS = 60

# (username, real name, department, role)
DEMO_USERS = [
    ("zhaomin", "赵敏", "华东大区", "sales_lead"),
    ("zhangwei", "张伟", "销售一部", "manager"),
    ("lina", "李娜", "销售一部", "manager"),
    ("wangqiang", "王强", "销售二部", "manager"),
    ("liuyang", "刘洋", "销售二部", "manager"),
    ("chenjing", "陈静", "华南销售部", "manager"),
    ("sunli", "孙丽", None, "readonly"),
]
# (name, parent)
DEMO_DEPTS = [("华东大区", None), ("销售一部", "华东大区"), ("销售二部", "华东大区"), ("华南销售部", None)]

CITIES = {  # city → (province label, district, street, phone area code)
    "上海": ("上海市", "浦东新区", "张江路", "021"),
    "杭州": ("浙江省杭州市", "西湖区", "文三路", "0571"),
    "南京": ("江苏省南京市", "玄武区", "中山路", "025"),
    "苏州": ("江苏省苏州市", "工业园区", "星湖街", "0512"),
    "广州": ("广东省广州市", "天河区", "天河北路", "020"),
    "深圳": ("广东省深圳市", "南山区", "科技园南路", "0755"),
    "北京": ("北京市", "海淀区", "中关村大街", "010"),
    "成都": ("四川省成都市", "高新区", "天府大道", "028"),
    "武汉": ("湖北省武汉市", "洪山区", "珞喻路", "027"),
}
# Trade names with a romanisation for e-mail and web addresses.
TRADE_NAMES = [
    ("恒远", "hengyuan"), ("瑞丰", "ruifeng"), ("华信", "huaxin"), ("金桥", "jinqiao"), ("鼎盛", "dingsheng"),
    ("天合", "tianhe"), ("博远", "boyuan"), ("宏达", "hongda"), ("诚泰", "chengtai"), ("永兴", "yongxing"),
    ("新锐", "xinrui"), ("汇通", "huitong"), ("安达", "anda"), ("佳和", "jiahe"), ("明珠", "mingzhu"),
    ("东升", "dongsheng"), ("海川", "haichuan"), ("盛世", "shengshi"), ("同创", "tongchuang"),
    ("联华", "lianhua"), ("卓越", "zhuoyue"), ("景程", "jingcheng"), ("启航", "qihang"), ("凯盛", "kaisheng"),
    ("九州", "jiuzhou"), ("锦程", "jincheng"), ("蓝海", "lanhai"), ("银河", "yinhe"), ("万方", "wanfang"),
    ("青禾", "qinghe"), ("中拓", "zhongtuo"), ("润泽", "runze"), ("远航", "yuanhang"), ("德邦", "debang"),
    ("信达", "xinda"), ("华晟", "huasheng"), ("元丰", "yuanfeng"), ("正和", "zhenghe"), ("泰禾", "taihe"),
    ("嘉禾", "jiahe2"), ("立信", "lixin"), ("通远", "tongyuan"),
]
INDUSTRY_WORDS = {
    "it": ["信息技术", "软件", "网络科技", "智能科技", "数据服务"],
    "manufacturing": ["精密机械", "电子", "新材料", "机电设备", "汽车零部件"],
    "retail": ["商贸", "贸易", "百货"],
    "construction": ["建设工程", "建筑装饰"],
    "logistics": ["物流", "供应链管理"],
    "food": ["食品", "餐饮管理"],
    "healthcare": ["医疗器械", "生物科技"],
    "education": ["教育科技"],
    "energy": ["新能源", "化工"],
}
LEGAL_FORMS = ["有限公司", "有限公司", "有限公司", "股份有限公司", "有限责任公司"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
         "超", "秀兰", "霞", "平", "刚", "桂英", "建华", "晓东", "海燕", "志强", "雪梅", "国庆", "文博", "思远",
         "子涵", "浩然", "欣怡", "佳怡", "宇航", "俊杰", "晨曦"]
POSITIONS = ["总经理", "副总经理", "采购经理", "采购专员", "财务总监", "技术负责人", "行政主管", "IT 经理", "运营总监"]
FOLLOW_UP_TEXTS = [
    "电话沟通了年度采购计划,客户预计下季度启动招标。",
    "上门拜访,演示了新版本功能,对报表模块很感兴趣。",
    "微信发送了报价单,客户反馈价格偏高,需要再申请折扣。",
    "与技术负责人开会确认对接方案,约定下周提交详细方案。",
    "邮件回复了售后问题,客户对处理速度表示满意。",
    "参加客户的供应商大会,了解到明年扩产计划。",
    "客户询问批量采购的优惠政策,已转交商务部门评估。",
    "回访上次交付情况,客户提出两个改进建议。",
]
CARE_DONE = [
    ("phone_call", "季度电话回访,了解产品使用情况。", "使用顺利,希望增加培训。"),
    ("holiday", "中秋节发送节日问候并寄送月饼礼盒。", "客户表示感谢。"),
    ("visit", "上门拜访,听取对服务的意见。", "对响应速度满意,建议增加夜间值班。"),
    ("survey", "年度满意度回访。", "总体满意,打分 9 分。"),
    ("gift", "客户周年庆寄送花篮。", "已签收。"),
]
PRODUCTS = [
    ("hardware", "智能考勤终端 K3", "人脸+指纹,支持 500 人", "台", "1280.00", 320),
    ("hardware", "工业级网关 G200", "4G/以太网双链路", "台", "3650.00", 85),
    ("hardware", "条码打印机 P80", "热敏/热转印,80mm", "台", "2150.00", 140),
    ("software", "客户管理软件 标准版", "20 用户,一年授权", "套", "19800.00", 999),
    ("software", "进销存管理系统", "含移动端,一年授权", "套", "12800.00", 999),
    ("software", "电子签章服务包", "1000 次签署", "年", "6800.00", 999),
    ("service", "实施与培训服务", "5 人天,现场", "次", "15000.00", 999),
    ("service", "年度运维服务", "7×24 小时响应", "年", "36000.00", 999),
    ("service", "数据迁移服务", "Excel/旧系统导入", "次", "8000.00", 999),
    ("consumable", "热敏标签纸 60×40", "800 张/卷,40 卷/箱", "箱", "360.00", 1200),
    ("consumable", "色带 110mm×300m", "混合基,24 卷/箱", "箱", "980.00", 460),
    ("solution", "门店数字化整体方案", "软硬件+实施,10 门店", "套", "168000.00", 20),
    ("solution", "工厂设备联网方案", "50 台设备接入", "套", "256000.00", 12),
]
STAGE_PROBABILITY = {"initial": 10, "requirement": 30, "proposal": 50, "negotiation": 70, "contract": 90}
OPPORTUNITY_TITLES = ["年度软件采购", "门店数字化改造", "考勤系统升级", "设备联网试点", "运维服务续约",
                      "新厂区信息化建设", "标签耗材年度框架", "电子签章上线"]
LOST_REASONS = ["客户预算削减,项目暂停。", "竞争对手报价低 15%,未中标。", "客户决定自研。"]


@dataclass
class DemoReport:
    password: str
    users: list[tuple[str, str, str]] = field(default_factory=list)  # username, real name, role
    counts: dict[str, int] = field(default_factory=dict)


class DemoAlreadyLoaded(UserError):
    pass


def _optional(module: str, name: str) -> Any:
    """A service function if that module provides it (the demo then goes through the real workflow)."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _local_today() -> dt.date:
    return local_today()


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """A local (Asia/Shanghai) wall-clock time on ``day`` as an aware datetime."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=company_tz())


def _birthday_on(day: dt.date, year: int) -> dt.date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a common year
        return dt.date(year, 2, 28)


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def _mobile(rng: random.Random) -> str:
    return rng.choice(["138", "139", "136", "150", "152", "158", "186", "188", "177", "199"]) + "".join(
        rng.choice("0123456789") for _ in range(8)
    )


def load_demo(session: Session, *, password: str, seed: int = 2024) -> DemoReport:
    """Fill an empty (seeded) database with demo data. The caller owns the transaction."""
    if session.execute(select(func.count()).select_from(Customer)).scalar():
        raise DemoAlreadyLoaded("数据库中已有客户数据,演示数据不会再次写入(避免与真实数据混在一起)。")
    taken = set(session.execute(
        select(SysUser.username).where(SysUser.username.in_([u[0] for u in DEMO_USERS]))
    ).scalars())
    if taken:
        raise DemoAlreadyLoaded(f"演示账号已存在({', '.join(sorted(taken))}),演示数据不会再次写入。")

    rng = random.Random(seed)
    today = _local_today()
    now = utcnow()
    report = DemoReport(password=password)

    depts: dict[str, SysDept] = {}
    for sort, (name, parent) in enumerate(DEMO_DEPTS, start=1):
        dept = SysDept(name=name, parent_id=depts[parent].id if parent else None, sort=sort * 10)
        session.add(dept)
        session.flush()
        depts[name] = dept
    users: dict[str, SysUser] = {}
    for username, real_name, dept_name, role in DEMO_USERS:
        user = create_user(session, username=username, password=password, real_name=real_name,
                           roles=[role], dept_id=depts[dept_name].id if dept_name else None,
                           must_change_password=False, phone=_mobile(rng),
                           email=f"{username}@demo-crm.cn")
        users[username] = user
        report.users.append((username, real_name, role))
    depts["华东大区"].leader_id = users["zhaomin"].id
    depts["销售一部"].leader_id = users["zhangwei"].id
    depts["销售二部"].leader_id = users["wangqiang"].id
    depts["华南销售部"].leader_id = users["chenjing"].id
    managers = [users[u] for u in ("zhangwei", "lina", "wangqiang", "liuyang", "chenjing", "zhaomin")]

    products = _products(session)
    customers = _customers(session, rng, managers, now)
    linkmen = _linkmen(session, rng, customers, today)
    _follow_ups(session, rng, customers, linkmen, today)
    _care(session, rng, customers, linkmen, today)
    opportunities = _opportunities(session, rng, customers, today)
    orders = _orders(session, rng, customers, products, today)
    transfers = _transfers(session, customers, users, now)
    alerts = _churn(session, customers, users["zhaomin"], now)

    session.flush()
    report.counts = {
        "部门": len(depts), "用户": len(users), "产品": len(products), "客户": len(customers),
        "联系人": len(linkmen),
        "联系记录": int(session.execute(select(func.count()).select_from(FollowUp)).scalar() or 0),
        "关怀记录/任务": int(session.execute(select(func.count()).select_from(CustomerCare)).scalar() or 0),
        "关怀计划": int(session.execute(select(func.count()).select_from(CarePlan)).scalar() or 0),
        "销售机会": len(opportunities), "订单": len(orders), "客户转移": transfers, "流失预警": alerts,
    }
    return report


def _products(session: Session) -> list[Product]:
    made = []
    for i, (category, name, spec, unit, price, stock) in enumerate(PRODUCTS, start=1):
        product = Product(code=f"P{i:04d}", name=name, category=category, spec=spec, unit=unit,
                          price=Decimal(price), stock=stock, is_active=True,
                          description=f"{name}({spec})")
        session.add(product)
        made.append(product)
    session.flush()
    return made


def _company_names(rng: random.Random, count: int) -> list[tuple[str, str, str, str]]:
    """(name, city, industry, romanised trade name), unique names."""
    names: dict[str, tuple[str, str, str, str]] = {}
    trade = TRADE_NAMES[:]
    rng.shuffle(trade)
    i = 0
    while len(names) < count:
        city = rng.choice(list(CITIES))
        industry = rng.choice(list(INDUSTRY_WORDS))
        word, roman = trade[i % len(trade)]
        i += 1
        name = f"{city}{word}{rng.choice(INDUSTRY_WORDS[industry])}{rng.choice(LEGAL_FORMS)}"
        names.setdefault(name, (name, city, industry, roman))
    return list(names.values())


def _customer_codes(session: Session, count: int) -> list[str]:
    allocate = _optional("crm_admin.customers.service", "next_customer_codes")
    if allocate is not None:
        return list(allocate(session, count))
    return [f"C{_local_today():%Y%m}{n:04d}" for n in range(1, count + 1)]


def _customers(session: Session, rng: random.Random, managers: list[SysUser],
               now: dt.datetime) -> list[Customer]:
    name_key = _optional("crm_admin.customers.service", "name_key")
    sources = ["referral", "exhibition", "website", "cold_call", "ads", "partner", "bidding"]
    codes = _customer_codes(session, DEMO_CUSTOMERS)
    made = []
    for i, (name, city, industry, roman) in enumerate(_company_names(rng, DEMO_CUSTOMERS)):
        province, district, street, area = CITIES[city]
        status = rng.choices(["potential", "active", "at_risk", "lost"], weights=[30, 55, 10, 5])[0]
        level = {"active": rng.choice("AB"), "potential": rng.choice("CD"), "at_risk": "B", "lost": "C"}[status]
        manager = managers[i % (len(managers) - 1)] if i % 12 else managers[-1]
        customer = Customer(
            code=codes[i], name=name,
            credit_code=make_credit_code(rng, region=city) if rng.random() < 0.9 else None,
            industry=industry, source=rng.choice(sources), level=level, status=status,
            region=province, address=f"{province}{district}{street}{rng.randint(1, 999)}号",
            phone=f"{area}-{rng.randint(5, 8)}{rng.randint(0, 9999999):07d}",
            email=f"contact@{roman}{i}.com.cn", website=f"https://www.{roman}{i}.com.cn",
            manager_id=manager.id,
            last_contact_at=None,  # set by the follow-ups logged below, as in real use
            remark=rng.choice([None, None, "年度重点跟进客户", "老客户介绍", "对价格较敏感", "需要开具增值税专用发票"]),
        )
        if name_key is not None:
            customer.name_key = name_key(name)
        session.add(customer)
        made.append(customer)
    session.flush()
    return made


def _linkmen(session: Session, rng: random.Random, customers: list[Customer],
             today: dt.date) -> list[Linkman]:
    made = []
    birthdays_today = 0
    for customer in customers:
        for j in range(rng.randint(1, 3)):
            name = _person(rng)
            year = rng.randint(1965, 1996)
            if birthdays_today < 6 and customer.status != "lost" and j == 0 and rng.random() < 0.2:
                birthday = _birthday_on(today, year)
                birthdays_today += 1
            else:
                birthday = dt.date(year, 1, 1) + dt.timedelta(days=rng.randint(0, 364))
            linkman = Linkman(
                customer_id=customer.id, name=name, gender=rng.choice(["男", "女"]),
                position=POSITIONS[0] if j == 0 else rng.choice(POSITIONS[1:]),
                phone=customer.phone, mobile=_mobile(rng),
                email=f"{rng.choice(['li', 'wang', 'zhang', 'chen', 'liu'])}{rng.randint(1, 99)}@"
                      f"{(customer.email or '@x').split('@')[1]}",
                birthday=birthday, is_primary=j == 0,
            )
            if hasattr(Linkman, "birthday_md"):
                linkman.birthday_md = birthday.month * 100 + birthday.day
            session.add(linkman)
            made.append(linkman)
    session.flush()
    # At least a few birthdays today however the dice fell: that is what the care screen shows first.
    for linkman in [m for m in made if m.is_primary][:max(0, 4 - birthdays_today)]:
        linkman.birthday = _birthday_on(today, linkman.birthday.year if linkman.birthday else 1985)
        linkman.birthday_md = linkman.birthday.month * 100 + linkman.birthday.day
    session.flush()
    return made


def _primary(linkmen: list[Linkman], customer: Customer) -> Linkman | None:
    return next((m for m in linkmen if m.customer_id == customer.id and m.is_primary), None)


def _follow_ups(session: Session, rng: random.Random, customers: list[Customer], linkmen: list[Linkman],
                today: dt.date) -> None:
    """Follow-ups logged through the service, by each customer's manager: the customer's last contact is
    the newest of them, and a customer at risk has not been contacted for more than 60 days."""
    methods = ["phone", "wechat", "visit", "email", "meeting"]
    users = {u.id: u for u in session.execute(select(SysUser)).scalars()}
    principals: dict[int, Any] = {}
    for customer in customers:
        if customer.manager_id is None:
            continue
        if customer.manager_id not in principals:
            principals[customer.manager_id] = load_principal(session.connection(), users[customer.manager_id])
        contact = _primary(linkmen, customer)
        quiet = customer.status == "at_risk"
        ages = sorted(rng.randint(65, 150) if quiet else rng.randint(1, 40 if k == 0 else 90)
                      for k in range(rng.randint(1, 4)))
        for k, age in enumerate(ages):  # the newest first: it carries the next follow-up date
            day = today - dt.timedelta(days=age)
            log_follow_up(
                session, principals[customer.manager_id], customer_id=customer.id,
                linkman_id=contact.id if contact else None, method=rng.choice(methods),
                content=rng.choice(FOLLOW_UP_TEXTS), contacted_at=_at(day, rng.randint(9, 17), rng.choice([0, 30])),
                next_follow_up_at=_at(today + dt.timedelta(days=rng.randint(0, 14)), 10) if k == 0 else None,
            )
    session.flush()


def _care(session: Session, rng: random.Random, customers: list[Customer], linkmen: list[Linkman],
          today: dt.date) -> None:
    working = [c for c in customers if c.status != "lost"]
    for i, customer in enumerate(working[:14]):
        contact = _primary(linkmen, customer)
        care_type, interval = (("phone_call", 30), ("visit", 90), ("holiday", 180))[i % 3]
        # A few plans are due today, the others later: the daily job turns due plans into tasks.
        next_date = today if i < 3 else today + dt.timedelta(days=rng.randint(3, interval))
        session.add(CarePlan(customer_id=customer.id, linkman_id=contact.id if contact else None,
                             care_type=care_type, interval_days=interval, next_date=next_date,
                             manager_id=customer.manager_id, is_active=True,
                             remark=f"每 {interval} 天一次"))
    for customer in working[:30]:
        contact = _primary(linkmen, customer)
        care_type, detail, feedback = rng.choice(CARE_DONE)
        day = today - dt.timedelta(days=rng.randint(3, 120))
        session.add(CustomerCare(customer_id=customer.id, linkman_id=contact.id if contact else None,
                                 care_type=care_type, care_time=_at(day, 15), due_date=day, detail=detail,
                                 feedback=feedback, status="done", manager_id=customer.manager_id,
                                 origin="manual"))
    for i, customer in enumerate(working[30:38]):
        contact = _primary(linkmen, customer)
        due = today if i < 5 else today - dt.timedelta(days=i)  # due today, and a few overdue
        session.add(CustomerCare(customer_id=customer.id, linkman_id=contact.id if contact else None,
                                 care_type=rng.choice(["phone_call", "visit", "gift"]), due_date=due,
                                 detail="回访近期使用情况" if i % 2 else "节前拜访,送上公司台历",
                                 status="pending", manager_id=customer.manager_id, origin="manual"))
    if working[38:39]:
        customer = working[38]
        session.add(CustomerCare(customer_id=customer.id, care_type="visit", due_date=today - dt.timedelta(days=10),
                                 detail="约好上门拜访", feedback="客户出差,改期", status="cancelled",
                                 manager_id=customer.manager_id, origin="manual"))
    session.flush()
    scan = _optional("crm_admin.care.service", "scan_birthdays")
    if scan is not None:
        scan(session, today)
    else:
        for m in linkmen:
            if m.birthday and (m.birthday.month, m.birthday.day) == (today.month, today.day):
                customer = next(c for c in customers if c.id == m.customer_id)
                session.add(CustomerCare(customer_id=m.customer_id, linkman_id=m.id, care_type="birthday",
                                         due_date=today, status="pending", manager_id=customer.manager_id,
                                         origin="birthday", task_key=f"birthday:{m.id}:{today.isoformat()}"))
    session.flush()


def _opportunities(session: Session, rng: random.Random, customers: list[Customer],
                   today: dt.date) -> list[SalesOpportunity]:
    made = []
    candidates = [c for c in customers if c.status in ("potential", "active", "at_risk")]
    plan = [(stage, "open") for stage in STAGE_PROBABILITY for _ in range(4)]
    plan += [("contract", "won")] * 5 + [("proposal", "lost"), ("negotiation", "lost"), ("initial", "lost")]
    for i, (stage, status) in enumerate(plan):
        customer = candidates[i % len(candidates)]
        amount = Decimal(rng.randint(8, 600) * 1000) + Decimal(rng.choice(["0.00", "500.00"]))
        opp = SalesOpportunity(
            customer_id=customer.id, title=f"{customer.name[:2]}{rng.choice(OPPORTUNITY_TITLES)}",
            stage=stage, amount=amount,
            probability={"won": 100, "lost": 0}.get(status, STAGE_PROBABILITY[stage]),
            expected_close_date=today + dt.timedelta(days=rng.randint(-30, 120)),
            next_step=None if status != "open" else rng.choice(
                ["提交正式报价", "安排产品演示", "确认技术方案", "推进合同审批", "约见采购负责人"]),
            next_follow_up_at=_at(today + dt.timedelta(days=rng.randint(0, 10)), 10) if status == "open" else None,
            manager_id=customer.manager_id, status=status,
            lost_reason=LOST_REASONS[i % len(LOST_REASONS)] if status == "lost" else None,
        )
        session.add(opp)
        made.append(opp)
    session.flush()
    return made


def _orders(session: Session, rng: random.Random, customers: list[Customer], products: list[Product],
            today: dt.date) -> list[CustomerOrder]:
    made = []
    buyers = [c for c in customers if c.status in ("active", "at_risk", "lost")]
    for customer in buyers:
        last: dt.date | None = None
        for _ in range(rng.randint(1, 3)):
            day = today - dt.timedelta(days=rng.randint(5, 360) if customer.status == "active"
                                       else rng.randint(200, 500))
            # numbered as every order is (O + month + running number), on the month's own counter
            order = CustomerOrder(order_no=next_order_no(session, f"{day:%Y%m}"), customer_id=customer.id,
                                  order_date=day,
                                  status=rng.choice(["completed", "completed", "confirmed"]),
                                  manager_id=customer.manager_id, amount=Decimal("0.00"))
            session.add(order)
            session.flush()
            total = Decimal("0.00")
            for product in rng.sample(products, rng.randint(1, 3)):
                quantity = 1 if product.category in ("solution", "service") else rng.randint(1, 20)
                session.add(OrderItem(order_id=order.id, product_id=product.id, quantity=quantity,
                                      unit_price=product.price))
                total += product.price * quantity
            order.amount = total  # the order total is exactly the sum of its items
            made.append(order)
            last = max(last or day, day)
        if last:
            customer.last_order_at = _at(last, 12)
    session.flush()
    return made


def _transfers(session: Session, customers: list[Customer], users: dict[str, SysUser],
               now: dt.datetime) -> int:
    """Two hand-overs, done by the sales lead through the real transfer workflow when it exists."""
    from_user, to_user = users["liuyang"], users["wangqiang"]
    moving = [c for c in customers if c.manager_id == from_user.id][:2]
    if not moving:
        return 0
    reason = "刘洋调岗至华南区域,客户交由同部门王强继续跟进。"
    transfer = _optional("crm_admin.transfers.service", "transfer_customers")
    load_principal = _optional("crm_admin.core.principal", "load_principal")
    if transfer is not None and load_principal is not None:
        principal = load_principal(session.connection(), users["zhaomin"])
        transfer(session, principal, customer_ids=[c.id for c in moving], new_manager_id=to_user.id,
                 reason=reason)
    else:
        for customer in moving:
            session.add(CustomerTransfer(customer_id=customer.id, old_manager_id=from_user.id,
                                         new_manager_id=to_user.id, reason=reason, transferred_at=now,
                                         operator_id=users["zhaomin"].id))
            customer.manager_id = to_user.id
    session.flush()
    return len(moving)


def _churn(session: Session, customers: list[Customer], handler: SysUser, now: dt.datetime) -> int:
    rules = [
        ChurnRule(name="60 天未联系", metric="days_since_contact", threshold=Decimal("60"), risk_level="medium"),
        ChurnRule(name="120 天未联系", metric="days_since_contact", threshold=Decimal("120"), risk_level="high"),
        ChurnRule(name="180 天未下单", metric="days_since_order", threshold=Decimal("180"), risk_level="medium"),
        ChurnRule(name="订单金额环比下降 50%", metric="order_amount_drop_pct", threshold=Decimal("50"),
                  risk_level="high"),
    ]
    session.add_all(rules)
    session.flush()
    at_risk = [c for c in customers if c.status == "at_risk"]
    lost = [c for c in customers if c.status == "lost"]
    count = 0
    for i, customer in enumerate(at_risk[:4]):
        status = ("open", "following", "open", "retained")[i]
        alert = ChurnAlert(customer_id=customer.id, rule_id=rules[0].id, risk_level="medium",
                           detected_at=now - dt.timedelta(days=3 + i * 5), status=status,
                           open_key=1 if status in ("open", "following") else None)
        if status == "following":
            alert.measures = "已安排区域经理上门拜访,提供续约优惠。"
            alert.reason = "service"
        if status == "retained":
            alert.reason, alert.analysis = "price", "竞品报价更低;给予 8 折续约后客户同意继续合作。"
            alert.measures, alert.handled_by, alert.handled_at = "续约 8 折", handler.id, now - dt.timedelta(days=2)
            customer.status = "active"
        session.add(alert)
        count += 1
    for customer in lost[:2]:
        session.add(ChurnAlert(customer_id=customer.id, rule_id=rules[2].id, risk_level="medium",
                               detected_at=now - dt.timedelta(days=40), status="lost", open_key=None,
                               reason="competitor", analysis="客户改用竞争对手的产品,价格为主要因素。",
                               measures="多次拜访并报价,未能挽回。", handled_by=handler.id,
                               handled_at=now - dt.timedelta(days=20)))
        count += 1
    session.flush()
    return count
