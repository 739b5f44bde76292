"""The labelling web app (FastAPI, Jinja2 pages; see :mod:`agents.labelling` for why).

Pages and requests:

- ``GET /``: the labeller's name form (first visit), else the comparison to judge: the prompt,
  the responses (A, B, ...), the sampling settings, the progress counters and the choices;
- ``POST /labeller``: set the labeller's name (a cookie);
- ``POST /judge``: store a judgment (committed before the reply) and show the next comparison;
- ``POST /undo``: delete the labeller's last judgment and show its comparison again.

Every POST carries the CSRF token (:mod:`.security`) and answers with a redirect to ``/``.
Keyboard shortcuts (``static/label.js``): 1..9 pick that response as the better one of a pair,
t tie, b both bad, s skip, u undo.
"""

from __future__ import annotations

import string
import urllib.parse
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from agents.labelling import security
from agents.labelling.feed import ComparisonFeed, SamplingFailed
from rlhf_env.data.judgments import (
    BOTH_BAD,
    RANKED,
    SKIP,
    TIE,
    JudgmentError,
    JudgmentStore,
    check_labeller,
)

HERE = Path(__file__).parent
LABELLER_COOKIE = "labeller"
LETTERS = string.ascii_uppercase
OTHER_CHOICES = ((TIE, "Tie", "t"), (BOTH_BAD, "Both bad", "b"), (SKIP, "Skip", "s"))


def create_app(
    feed: ComparisonFeed,
    store: JudgmentStore,
    *,
    token: str | None = None,
) -> FastAPI:
    """The app serving ``feed`` into ``store``. ``token``: the access token every request must
    carry (None: no token, and only loopback host names are answered). The app starts the
    feed's thread when it starts and stops it when it stops."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        feed.start()
        yield
        feed.stop()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    secret = security.new_secret()
    templates = Jinja2Templates(
        env=jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if token is None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(security.LOOPBACK_NAMES))

    @app.middleware("http")
    async def access(request: Request, call_next):
        return await security.check_access(request, call_next, token)

    def page(request: Request, name: str, status: int = 200, **context) -> Response:
        session = request.cookies.get(security.SESSION_COOKIE) or security.new_secret()
        context["csrf"] = security.csrf_token(secret, session)
        response = templates.TemplateResponse(request, name, context, status_code=status)
        if request.cookies.get(security.SESSION_COOKIE) != session:
            security.set_cookie(response, security.SESSION_COOKIE, session)
        return response

    def labeller_of(request: Request) -> str | None:
        try:
            return check_labeller(urllib.parse.unquote(request.cookies.get(LABELLER_COOKIE, "")))
        except JudgmentError:
            return None

    def refuse(request: Request, csrf: str) -> Response | None:
        """A 403 page for a POST without the right CSRF token, else None."""
        if security.csrf_ok(secret, request.cookies.get(security.SESSION_COOKIE), csrf):
            return None
        return page(
            request,
            "message.html",
            403,
            title="Form expired",
            message="This form is out of date or did not come from this page (the server may "
            "have restarted). Go back to the labelling page and try again.",
        )

    def home() -> RedirectResponse:
        return RedirectResponse("/", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        labeller = labeller_of(request)
        if labeller is None:
            return page(request, "name.html")
        try:
            comparison = feed.current(labeller)
        except SamplingFailed as error:
            return page(request, "message.html", 500, title="Sampling failed", message=str(error))
        if comparison is None:
            return page(request, "waiting.html")
        mine = store.count(labeller)
        return page(
            request,
            "compare.html",
            labeller=labeller,
            comparison=comparison,
            responses=list(zip(LETTERS, comparison.responses)),
            others=OTHER_CHOICES,
            judged_by_you=mine,
            judged_by_all=store.count(),
            ready=feed.ready_count,
        )

    @app.post("/labeller")
    def set_labeller(request: Request, name: str = Form(""), csrf: str = Form("")) -> Response:
        refused = refuse(request, csrf)
        if refused is not None:
            return refused
        try:
            name = check_labeller(name)
        except JudgmentError as error:
            return page(request, "name.html", 400, error=str(error))
        response = home()
        # Percent-encoded: a cookie holds ASCII only; names need not be.
        security.set_cookie(response, LABELLER_COOKIE, urllib.parse.quote(name, safe=""))
        return response

    @app.post("/judge")
    async def judge(request: Request) -> Response:
        form = await request.form()
        refused = refuse(request, str(form.get("csrf", "")))
        if refused is not None:
            return refused
        labeller = labeller_of(request)
        comparison = feed.current(labeller, timeout=0) if labeller else None
        if comparison is None or form.get("comparison") != comparison.uid:
            return page(
                request,
                "message.html",
                409,
                title="Out of date",
                message="This comparison is no longer the one shown to you (another tab?). "
                "Go back to the labelling page.",
            )
        try:
            choice, ranking = _choice(form, len(comparison.responses))
            store.record(comparison, labeller, choice, ranking)
        except JudgmentError as error:
            return page(request, "message.html", 400, title="Not stored", message=str(error))
        feed.judged(labeller, comparison)
        return home()

    @app.post("/undo")
    def undo(request: Request, csrf: str = Form("")) -> Response:
        refused = refuse(request, csrf)
        if refused is not None:
            return refused
        labeller = labeller_of(request)
        comparison = store.undo_last(labeller) if labeller else None
        if comparison is not None:
            feed.undone(labeller, comparison)
        return home()

    return app


def _choice(form, k: int) -> tuple[str, list[int] | None]:
    """``(choice, ranking)`` of a submitted form: ``better=i`` (response i is the better of a
    pair), ``choice=rank`` with ``rank_0..rank_{k-1}`` (1 = best), or ``choice=tie|both_bad|skip``.
    """
    if form.get("better") is not None:
        if k != 2:
            raise JudgmentError(f"'better' picks one of a pair; rank the {k} responses instead")
        best = _number(form["better"], 0, 1)
        return RANKED, [best, 1 - best]
    choice = form.get("choice")
    if choice == "rank":
        ranks = [_number(form.get(f"rank_{i}"), 1, k) for i in range(k)]
        if len(set(ranks)) != k:
            raise JudgmentError(f"give each response a different rank from 1 (best) to {k}")
        return RANKED, sorted(range(k), key=ranks.__getitem__)
    if choice in (TIE, BOTH_BAD, SKIP):
        return choice, None
    raise JudgmentError(f"unknown choice {choice!r}")


def _number(value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = low - 1
    if not low <= number <= high:
        raise JudgmentError(f"expected a number from {low} to {high}, got {value!r}")
    return number
