"""The dashboard's router: every page under /dashboard/, behind the login.

To add pages: write a Controller (its `path` relative to /dashboard, `include_in_schema =
False`; each handler asks for `viewer` with `dependencies=requires(Role.X)` and answers
`pages.render(viewer, "dashboard/your.html", ...)`), add it to PAGES below, and add its entry
to `nav.ENTRIES`. Templates extend "dashboard/layout.html".
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, Router

from qrloop import metrics
from qrloop.dashboard.account_pages import AccountPages
from qrloop.dashboard.agreement_pages import AgreementPages
from qrloop.dashboard.auth import PATH, AnyRequest, LoginRequired, on_login_required
from qrloop.dashboard.campaign_pages import CampaignPages
from qrloop.dashboard.key_pages import ApiKeyPages
from qrloop.dashboard.login import LoginPages
from qrloop.dashboard.order_pages import OrderPages
from qrloop.dashboard.pages import render
from qrloop.dashboard.redemption_pages import RedemptionPages
from qrloop.dashboard.settlement_pages import SettlementPages
from qrloop.dashboard.store_pages import StorePages, TerminalPages
from qrloop.dashboard.user_pages import UserPages
from qrloop.dashboard.webhook_pages import WebhookPages
from qrloop.errors import Problem

PAGES: list[type[Controller]] = [
    LoginPages,
    CampaignPages,
    OrderPages,
    ApiKeyPages,
    UserPages,
    AccountPages,
    RedemptionPages,
    SettlementPages,
    StorePages,
    TerminalPages,
    AgreementPages,
    WebhookPages,
]


def on_problem(request: AnyRequest, problem: Problem) -> Response[Any]:
    """A refusal shown to a person as a page (same status, same words); to anything else
    (a script, a test) as the API's problem+json."""
    if "text/html" not in request.headers.get("accept", ""):
        answer: Response[Any] = request.app.exception_handlers[Problem](request, problem)
        return answer
    metrics.count_answer(request.scope.get("path_template") or metrics.UNMATCHED, problem.reason)
    return render(
        None,
        "dashboard/problem.html",
        status=problem.status,
        headers=problem.headers,
        problem=problem.body(),
    )


def dashboard_router() -> Router:
    return Router(
        path=PATH,
        route_handlers=PAGES,
        exception_handlers={LoginRequired: on_login_required, Problem: on_problem},
        include_in_schema=False,
    )
