"""The wall speaks zh-CN and English from one message table (``frontend/i18n.js``).

The table is read the way the browser reads it: the real Chromium imports ``/static/i18n.js``
from the live server and hands back ``MESSAGES``, so a syntax error, a key missing a language or
a placeholder that differs between languages fails here naming the key and the language. The
page's sources are then checked against it: every key the code or the HTML asks for exists, and
every key in the table is asked for somewhere. Keys built at run time (``t(`tier.${tier}`)``)
are listed below as families with their members, taken from the server's own enumerations
where it has them, so a new step status or channel without its words fails too.

Then the switch itself, in the browser: the sign-in page in Chinese, remembered over a reload,
and back; the call-out answer page in the phone's language; the activation panel's plans under
their Chinese titles.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from command.auth import Role
from command.monitoring.fence_rules import TEMPORARY_KINDS
from command.monitoring.health import FLAGS as HEALTH_FLAGS
from command.monitoring.wristbands import ALARM_KINDS
from command.notifications import CHANNELS, NOTICE_STATUSES
from command.routes import wall
from command.sensors import TIERS
from gis.model import (
    LAYERS,
    ReceptorKind,
    ResourceKind,
    ResourceStatus,
    RiskGrade,
    SensorKind,
    ZoneKind,
)
from plans.engine import Status
from plans.model import Level
from tests.conftest import DEMO_ID, TEST_PASSWORD, site_database
from tests.live_server import LiveServer

FRONTEND = wall.FRONTEND
CHROMIUM = Path("/usr/bin/chromium")
LEAFLET = wall.leaflet_dir(FRONTEND) / "leaflet.js"
WAIT_MS = 10_000
LANGUAGES = ("en", "zh-CN")
COMMANDER = "i18n-commander"
PLACEHOLDER = re.compile(r"\{(\w+)\}")

EDITED_LAYERS = ("zones", "resources", "sensors")  # the layers frontend/editor.js edits
# Keys built at run time: the fixed part of the template -> the values its variable takes.
DYNAMIC_KEYS: dict[str, tuple[str, ...]] = {
    "status.": ("offline", "connecting", "reconnecting", "live", "resync"),
    "sound.": ("on", "muted", "blocked"),
    "step.status.": tuple(Status),
    "tier.": (*TIERS, "normal"),
    "response.": tuple(Level),
    "threat.meaning.": ("1", "2", "3"),
    "compass.": ("N", "NE", "E", "SE", "S", "SW", "W", "NW"),
    "channel.": CHANNELS,
    "receptor.": tuple(ReceptorKind),
    "calltree.status.": NOTICE_STATUSES,
    "risk.": tuple(RiskGrade),
    "kpi.": ("to_move", "arrived", "missing", "trapped", "threat", "overdue", "unanswered"),
    "tab.": ("steps", "people", "resources", "calltree", "log", "command"),
    "mode.": ("walk", "drive"),
    "health.": HEALTH_FLAGS,  # detector health flags (frontend/health.js)
    "fence.kind.": ("zone", *TEMPORARY_KINDS),  # fences (frontend/fences.js)
    "person_alarm.kind.": ALARM_KINDS,  # people's alarms (frontend/person-alarms.js)
    # the layer editor: the layers it edits, its features' states, their attributes and values
    "editor.layer.": EDITED_LAYERS,
    "editor.state.": ("unsaved", "refused", "conflict"),
    "field.": tuple(dict.fromkeys(f for n in EDITED_LAYERS for f in LAYERS[n].fields)),
    "enum.": (*ZoneKind, *RiskGrade, *ResourceKind, *ResourceStatus, *SensorKind),
}
# Prefixes whose keys the code keeps in data (a field's label, an option's words) and passes
# to t() in a variable: any string literal of this shape in the code must be a key.
DATA_KEY = re.compile(r"""["']((?:act|stepact|design|hazard|answer)\.[\w.]+)["']""")
HTML_KEY = re.compile(r"""\bdata-i18n(?:-title|-aria)?\s*=\s*["']([^"']+)["']""")
# A key set on an element from the code: {"data-i18n": "key"} or node.dataset.i18n = "key".
JS_ATTRIBUTE_KEY = re.compile(
    r"""["']data-i18n(?:-title|-aria)?["']\s*:\s*["']([^"']+)["']"""
    r"""|dataset\.i18n(?:Title|Aria)?\s*=\s*["']([^"']+)["']"""
)
# What a key looks like: dotted words ("calltree.status.passed_on"); every key of the table does.
KEY_SHAPE = re.compile(r"[A-Za-z]\w*(?:\.[\w-]+)+")
STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")


def require(ready: bool, missing: str) -> None:
    """Skip when something is ``missing``; under CI, fail instead (as tests/test_browser.py)."""
    if ready:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing}: the browser tests must run in CI")
    pytest.skip(f"{missing} ('make test' installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    url = site_database(tmp_path_factory.mktemp("i18n") / "i18n.db", {COMMANDER: Role.COMMANDER})
    with LiveServer(url, heartbeat_s=1.0) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(LEAFLET.is_file(), "Leaflet is not installed")
    require(CHROMIUM.is_file(), f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        # Debian's Chromium, never a downloaded one.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def new_page(browser: Browser, locale: str) -> Page:
    """A page in a fresh context (nothing remembered), whose browser prefers ``locale``."""
    context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


@pytest.fixture(scope="module")
def messages(server: LiveServer, browser: Browser) -> dict[str, dict[str, str]]:
    """The table as the browser has it: ``MESSAGES`` of ``/static/i18n.js``, imported."""
    page = new_page(browser, "en-US")
    try:
        page.goto(f"{server.base}/answer")
        table: dict[str, dict[str, str]] = json.loads(
            page.evaluate("async () => JSON.stringify((await import('/static/i18n.js')).MESSAGES)")
        )
    finally:
        page.context.close()
    assert table, "MESSAGES is empty"
    return table


# -- reading the sources ---------------------------------------------------------------------------


def scripts() -> dict[str, str]:
    """The page's modules, less the table itself (its definitions are no use of a key)."""
    return {p.name: p.read_text() for p in sorted(FRONTEND.glob("*.js")) if p.name != "i18n.js"}


def first_argument(source: str, start: int) -> str:
    """The text of a call's first argument, ``start`` just after its "(": to the comma or the
    parenthesis that ends it at its own depth, skipping over strings and template literals."""
    depth = 0
    i = start
    while i < len(source):
        c = source[i]
        if c in "\"'`":
            i += 1
            while i < len(source) and source[i] != c:
                i += 2 if source[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                return source[start:i]
            depth -= 1
        elif c == "," and depth == 0:
            return source[start:i]
        i += 1
    return source[start:]


def asked_keys() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The keys the code asks for (key -> the files asking), and the run-time templates
    (their fixed part -> the files): from each t(...)'s first argument (a literal, each branch
    of a conditional, or a template literal), the data keys, and the keys of the HTML."""
    keys: dict[str, set[str]] = {}
    templates: dict[str, set[str]] = {}
    for name, source in scripts().items():
        for call in re.finditer(r"(?<![\w$])t\(", source):
            argument = first_argument(source, call.end())
            # A template's own strings ("alarm" in `tier.${tier || "alarm"}`) are no keys.
            for literal in STRING.findall(re.sub(r"`[^`]*`", "", argument)):
                if KEY_SHAPE.fullmatch(literal[1:-1]):  # not the "skip" of `action === "skip"`
                    keys.setdefault(literal[1:-1], set()).add(name)
            for template in re.findall(r"`([^`]*)`", argument):
                if "${" in template:
                    templates.setdefault(template.split("${", 1)[0], set()).add(name)
                else:
                    keys.setdefault(template, set()).add(name)
        for key in DATA_KEY.findall(source):
            keys.setdefault(key, set()).add(name)
        for pair in JS_ATTRIBUTE_KEY.findall(source):
            keys.setdefault(pair[0] or pair[1], set()).add(name)
    for page in sorted(FRONTEND.glob("*.html")):
        for key in HTML_KEY.findall(page.read_text()):
            keys.setdefault(key, set()).add(page.name)
    return keys, templates


def quoted_anywhere() -> set[str]:
    """Every string literal of the code and every data-i18n value of the HTML: a key that is
    none of these, nor a member of a family in DYNAMIC_KEYS, is asked for nowhere."""
    found: set[str] = set()
    for source in scripts().values():
        found.update(s[1:-1] for s in STRING.findall(source))
        found.update(re.findall(r"`([^`$]*)`", source))
    for page in FRONTEND.glob("*.html"):
        found.update(HTML_KEY.findall(page.read_text()))
    return found


# -- the table ---------------------------------------------------------------------------------


def test_every_key_has_both_languages(messages: dict[str, dict[str, str]]) -> None:
    problems = []
    for key, texts in messages.items():
        for language in LANGUAGES:
            text = texts.get(language)
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{key}: no {language} text")
        for extra in set(texts) - set(LANGUAGES):
            problems.append(f"{key}: a language the wall does not offer: {extra!r}")
    assert not problems, "\n".join(problems)


def test_every_key_looks_like_a_key(messages: dict[str, dict[str, str]]) -> None:
    """The source scan knows a key by its shape."""
    odd = sorted(key for key in messages if not KEY_SHAPE.fullmatch(key))
    assert not odd, f"keys not of the shape word.word: {odd}"


def test_both_languages_fill_the_same_placeholders(messages: dict[str, dict[str, str]]) -> None:
    problems = []
    for key, texts in messages.items():
        english = set(PLACEHOLDER.findall(texts.get("en", "")))
        chinese = set(PLACEHOLDER.findall(texts.get("zh-CN", "")))
        if english != chinese:
            problems.append(
                f"{key}: en has {{{', '.join(sorted(english))}}}, "
                f"zh-CN has {{{', '.join(sorted(chinese))}}}"
            )
    assert not problems, "\n".join(problems)


def test_every_key_the_page_asks_for_is_in_the_table(messages: dict[str, dict[str, str]]) -> None:
    keys, templates = asked_keys()
    assert "login.title" in keys, "the scan found none of the sign-in page's keys"
    problems = [
        f"{key} (asked for in {', '.join(sorted(files))}) is not in MESSAGES: add its en and zh-CN"
        for key, files in sorted(keys.items())
        if key not in messages
    ]
    for prefix, files in sorted(templates.items()):
        if prefix not in DYNAMIC_KEYS:
            problems.append(
                f"t(`{prefix}${{…}}`) in {', '.join(sorted(files))}: list the values it takes in "
                "DYNAMIC_KEYS of tests/test_wall_i18n.py"
            )
    # Every value a family takes, whether the code looks it up in t(`…`) or builds the key first.
    for prefix, values in DYNAMIC_KEYS.items():
        for value in values:
            if f"{prefix}{value}" not in messages:
                problems.append(
                    f"{prefix}{value} (the key of {prefix}… for '{value}') is not in MESSAGES: "
                    "add its en and zh-CN"
                )
    assert not problems, "\n".join(problems)


def test_every_key_in_the_table_is_asked_for(messages: dict[str, dict[str, str]]) -> None:
    quoted = quoted_anywhere()
    members = {f"{prefix}{value}" for prefix, values in DYNAMIC_KEYS.items() for value in values}
    unused = sorted(key for key in messages if key not in quoted and key not in members)
    assert not unused, "keys that no code or page asks for (remove them, or list a run-time " + (
        "family in DYNAMIC_KEYS):\n" + "\n".join(unused)
    )


def test_the_scan_sees_keys_in_conditionals_and_data() -> None:
    """The source scan itself, on what the code does: a key in each branch of a conditional,
    a key in a field's data, a template's fixed part."""
    source = 'x = t(gas ? "design.plan_gas" : "design.plan", { what }) + t(`tier.${a || "b"}`);'
    start = source.index("t(") + 2
    assert STRING.findall(first_argument(source, start)) == ['"design.plan_gas"', '"design.plan"']
    start = source.index("t(`") + 2
    assert first_argument(source, start) == '`tier.${a || "b"}`'
    keys, templates = asked_keys()
    assert {"act.field.rate_g_s", "stepact.why_skip", "design.plan_gas", "answer.confirm"} <= set(
        keys
    )
    assert "status." in templates


# -- the plans' Chinese titles -----------------------------------------------------------------


def sign_in(server: LiveServer) -> dict[str, str]:
    login = {"username": COMMANDER, "password": TEST_PASSWORD}
    answer = httpx.post(f"{server.base}/api/auth/login", json=login)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def plan_summaries(server: LiveServer) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.base}/api/sites/{DEMO_ID}/plans", headers=sign_in(server))
    assert answer.status_code == 200, answer.text
    plans: list[dict[str, Any]] = answer.json()["plans"]
    return plans


def test_the_plan_list_gives_each_plans_chinese_title(server: LiveServer) -> None:
    plans = plan_summaries(server)
    assert plans
    for plan in plans:
        assert plan["title_zh"] and plan["title_zh"] != plan["title"], plan


# -- the switch, in the browser ----------------------------------------------------------------


def test_the_sign_in_page_switches_to_chinese_and_remembers_it(
    server: LiveServer, browser: Browser, messages: dict[str, dict[str, str]]
) -> None:
    page = new_page(browser, "en-US")
    try:
        page.goto(f"{server.base}/")
        page.wait_for_selector("#login:not([hidden])")
        assert page.get_attribute("html", "lang") == "en"  # the browser's language at first
        assert page.inner_text("#login h2") == "Sign in"

        page.select_option("#language", "zh-CN")
        page.wait_for_function("document.documentElement.lang === 'zh-CN'")
        assert page.inner_text("#login h2") == "登录" == messages["login.title"]["zh-CN"]
        assert page.inner_text("#login-submit") == "登录" == messages["login.submit"]["zh-CN"]
        assert page.inner_text("#login label span[data-i18n='login.username']") == "用户名"

        page.reload()
        page.wait_for_selector("#login:not([hidden])")
        assert page.get_attribute("html", "lang") == "zh-CN", "the choice was not remembered"
        assert page.input_value("#language") == "zh-CN"
        assert page.inner_text("#login h2") == "登录"
        assert page.inner_text("#login-submit") == "登录"

        page.select_option("#language", "en")
        page.wait_for_function("document.documentElement.lang === 'en'")
        assert page.inner_text("#login h2") == "Sign in"
        assert page.inner_text("#login-submit") == "Sign in"
        page.reload()
        page.wait_for_selector("#login:not([hidden])")
        assert page.get_attribute("html", "lang") == "en"
    finally:
        page.context.close()


def test_the_answer_page_speaks_the_phones_language_and_switches(
    server: LiveServer, browser: Browser, messages: dict[str, dict[str, str]]
) -> None:
    page = new_page(browser, "zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
    try:
        page.goto(f"{server.base}/answer")  # no token: the page says the link is incomplete
        page.wait_for_function("document.querySelector('#result').textContent !== ''")
        assert page.get_attribute("html", "lang") == "zh-CN"
        assert page.inner_text("#result") == messages["answer.incomplete"]["zh-CN"]
        assert page.inner_text("#confirm") == messages["answer.confirm"]["zh-CN"]
        assert page.title() == messages["answer.title"]["zh-CN"]
        assert page.is_disabled("#confirm")

        page.select_option("#language", "en")
        page.wait_for_function("document.documentElement.lang === 'en'")
        assert page.inner_text("#result") == messages["answer.incomplete"]["en"]
        assert page.inner_text("#confirm") == messages["answer.confirm"]["en"]
        assert page.inner_text("#ask") == messages["answer.ask"]["en"]
        assert not errors, errors
    finally:
        page.context.close()


def test_the_activation_panel_shows_the_plans_chinese_titles(
    server: LiveServer, browser: Browser, messages: dict[str, dict[str, str]]
) -> None:
    plans = {plan["id"]: plan for plan in plan_summaries(server)}
    page = new_page(browser, "zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
    try:
        page.goto(f"{server.base}/")
        page.fill("#username", COMMANDER)
        page.fill("#password", TEST_PASSWORD)
        page.click("#login-submit")
        page.click(f"#site-list button[data-site='{DEMO_ID}']")
        page.wait_for_selector("#activate-hazard[data-plan]", state="attached")

        def options() -> dict[str, str]:
            found: dict[str, str] = page.eval_on_selector_all(
                "#activate-plan option", "os => Object.fromEntries(os.map(o => [o.value, o.text]))"
            )
            return found

        assert set(options()) == set(plans)
        for plan_id, text in options().items():
            assert text == f"{plans[plan_id]['title_zh']}（{plan_id}）", text
        label = messages["act.field.wind_from_deg"]
        assert label["zh-CN"] in page.inner_text("#activate-hazard-fields")

        page.select_option("#language", "en")  # the panel says it again, in English
        page.wait_for_function("document.documentElement.lang === 'en'")
        for plan_id, text in options().items():
            assert text == f"{plans[plan_id]['title']} ({plan_id})", text
        fields = page.inner_text("#activate-hazard-fields")
        assert label["en"] in fields and label["zh-CN"] not in fields
        assert not errors, errors
    finally:
        page.context.close()
