"""The labelling app in a real headless Chromium (Playwright): labelling by click and by key,
undo, the database and the export; untrusted text shown as text; the access token, CSRF and host
checks; rankings of k > 2; the feed's sharing of comparisons; agreement between labellers.

The browser is the system Chromium (``/usr/bin/chromium``; ``make install`` installs it). With
``RLHF_ENV_REQUIRE_BROWSER=1`` (CI) a missing Playwright or Chromium fails the browser tests
instead of skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from agents.cli import main
from agents.labelling.app import create_app
from agents.labelling.feed import ComparisonFeed
from agents.labelling.policy import resolve_policy
from agents.labelling.report import labeller_agreement
from agents.labelling.sampling import ComparisonSampler, SamplingSettings
from rlhf_env.data.judgments import Comparison, Judgment, JudgmentStore

CHROMIUM = os.environ.get("RLHF_ENV_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCRIPT = "<script>window.pwned = 1</script>"
IMAGE = '<img src=x onerror="window.pwned = 2">'


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("RLHF_ENV_REQUIRE_BROWSER"):
        from playwright.sync_api import sync_playwright  # CI installs it: missing fails

        assert os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM} (make install)"
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
        if not os.access(CHROMIUM, os.X_OK):
            pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def serve():
    """``serve(app)``: run the app with uvicorn on a free loopback port; returns its base URL."""
    import uvicorn

    servers = []

    def start(app) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


def fixed_batches(*batches: list[Comparison]):
    """A sampler handing out the given batches, then nothing more."""
    queue = list(batches)

    def sample() -> list[Comparison]:
        if not queue:
            time.sleep(0.2)
            return []
        return queue.pop(0)

    return sample


def comparison(prompt: str, *responses: str) -> Comparison:
    return Comparison(prompt, responses, "fixed", "rlhf_env/Tiny-v0", {"k": len(responses)})


def sign_in(page, url: str, name: str = "ann") -> None:
    page.goto(url)
    page.fill("#name", name)
    page.click("#start")
    page.wait_for_selector("#prompt")


def shown(page) -> tuple[str, tuple[str, ...]]:
    responses = page.locator(".response .text")
    return page.inner_text("#prompt"), tuple(
        responses.nth(i).inner_text() for i in range(responses.count())
    )


def test_label_by_click_and_key_undo_and_export(page, serve, tmp_path):
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    store = JudgmentStore(url)
    source = resolve_policy("tiny", "rlhf_env/Tiny-v0")
    sampler = ComparisonSampler(source, SamplingSettings(k=2, prompts_per_batch=4, seed=1))
    base = serve(create_app(ComparisonFeed(sampler, store, ready=4), store))

    sign_in(page, base)
    assert "tiny" in page.inner_text("#settings") and "temperature" in page.inner_text("#settings")
    seen = []
    for action in ("click:#better-0", "key:2", "click:#tie", "key:s"):
        seen.append(shown(page))
        kind, target = action.split(":")
        if kind == "click":
            page.click(target)
        else:
            page.keyboard.press(target)
        page.wait_for_selector(f"#mine:text-is('{len(seen)}')")
    page.keyboard.press("u")  # undo the skip: its comparison comes back
    page.wait_for_selector("#mine:text-is('3')")
    assert shown(page) == seen[3]
    page.keyboard.press("1")
    page.wait_for_selector("#mine:text-is('4')")

    rows = JudgmentStore(url).judgments()
    assert [(r.choice, r.ranking) for r in rows] == [
        ("ranked", [0, 1]),
        ("ranked", [1, 0]),
        ("tie", None),
        ("ranked", [0, 1]),
    ]
    assert [(r.prompt, tuple(r.responses)) for r in rows] == [seen[0], seen[1], seen[2], seen[3]]
    assert {r.labeller for r in rows} == {"ann"} and {r.policy for r in rows} == {"tiny"}
    assert rows[0].sampling["max_new_tokens"] == 8

    out = tmp_path / "prefs.jsonl"
    result = CliRunner().invoke(main, ["label", "export", url, str(out)])
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["prompt"], e["chosen"], e["rejected"]) for e in exported] == [
        (seen[0][0], seen[0][1][0], seen[0][1][1]),
        (seen[1][0], seen[1][1][1], seen[1][1][0]),
        (seen[3][0], seen[3][1][0], seen[3][1][1]),
    ]


def test_untrusted_text_is_shown_as_text(page, serve, tmp_path):
    store = JudgmentStore(f"sqlite:///{tmp_path / 'labels.db'}")
    batch = [comparison("<b>bold?</b>", SCRIPT, IMAGE)]
    base = serve(create_app(ComparisonFeed(fixed_batches(batch), store), store))
    sign_in(page, base, name="<i>Zoë</i> 李")  # a name is any printable text, shown as text
    assert shown(page) == ("<b>bold?</b>", (SCRIPT, IMAGE))
    assert "<i>Zoë</i> 李" in page.inner_text("#labeller")
    assert page.evaluate("window.pwned") is None
    assert page.locator(".text *, #labeller *").count() == 0
    page.keyboard.press("2")
    page.wait_for_selector("#waiting")  # nothing more to label
    (row,) = store.judgments()
    assert (row.labeller, row.responses, row.ranking) == ("<i>Zoë</i> 李", [SCRIPT, IMAGE], [1, 0])


def test_the_access_token_is_required_when_set(page, serve, tmp_path):
    store = JudgmentStore(f"sqlite:///{tmp_path / 'labels.db'}")
    batch = [comparison("p", " a", " b")]
    base = serve(create_app(ComparisonFeed(fixed_batches(batch), store), store, token="s3cret"))
    assert page.goto(base + "/").status == 403
    assert "access token" in page.inner_text("body")
    assert page.goto(base + "/?token=wrong").status == 403
    assert page.goto(base + "/static/label.js").status == 403
    assert page.goto(base + "/?token=s3cret").status == 200
    assert page.url == base + "/"  # the token left the address bar for a cookie
    assert page.goto(base + "/").status == 200  # the link's token is kept in a cookie
    sign_in(page, base)
    # A POST with the token cookie but without the form's CSRF token is refused.
    refused = page.request.post(base + "/judge", form={"comparison": "x", "better": "0"})
    assert refused.status == 403
    assert httpx.get(base + "/").status_code == 403  # another client without the token
    assert store.count() == 0


def test_forms_need_their_csrf_token_and_hosts_are_checked(tmp_path):
    store = JudgmentStore(f"sqlite:///{tmp_path / 'labels.db'}")
    app = create_app(ComparisonFeed(fixed_batches([comparison("p", " a", " b")]), store), store)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.post("/labeller", data={"name": "mallory"}).status_code == 403
        assert client.post("/labeller", data={"name": "m", "csrf": "0" * 64}).status_code == 403
        assert "labeller" not in client.cookies
    rebound = TestClient(app, base_url="http://evil.example")  # DNS rebinding
    assert rebound.get("/").status_code == 400


def test_rankings_of_three_responses(tmp_path):
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    store = JudgmentStore(url)
    batch = [comparison("p", " x", " y", " z"), comparison("q", " u", " v", " w")]
    app = create_app(ComparisonFeed(fixed_batches(batch), store), store)
    with TestClient(app, base_url="http://localhost") as client:
        csrf = _csrf(client.get("/").text)
        client.post("/labeller", data={"name": "ann", "csrf": csrf})
        page = client.get("/").text
        assert 'id="rank-2"' in page and "better-0" not in page
        uid = batch[0].uid
        form = {"csrf": csrf, "comparison": uid, "choice": "rank"}
        duplicate = client.post("/judge", data={**form, "rank_0": 1, "rank_1": 1, "rank_2": 2})
        assert duplicate.status_code == 400 and "different rank" in duplicate.text
        client.post("/judge", data={**form, "rank_0": 2, "rank_1": 3, "rank_2": 1})
    (row,) = JudgmentStore(url).judgments()
    assert (row.choice, row.ranking) == ("ranked", [2, 0, 1])


def _csrf(page: str) -> str:
    import re

    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_each_comparison_goes_to_the_labellers_it_needs(tmp_path):
    store = JudgmentStore(f"sqlite:///{tmp_path / 'labels.db'}")
    first, second = comparison("one", " a", " b"), comparison("two", " c", " d")
    feed = ComparisonFeed(fixed_batches([first, second]), store, labels_per_comparison=2).start()
    try:
        assert feed.current("ann") == first and feed.current("ann") == first  # kept until judged
        assert feed.current("bob") == first  # needs two labellers
        assert feed.current("cat") == second  # first is taken by two already
        store.record(first, "ann", "ranked", [0, 1])
        feed.judged("ann", first)
        assert feed.current("ann") == second
        store.undo_last("ann")
        feed.undone("ann", first)
        assert feed.current("ann") == first
    finally:
        feed.stop()
    # A restarted feed serves comparisons still short of labels first, to those who lack them.
    store.record(first, "ann", "ranked", [0, 1])
    restarted = ComparisonFeed(fixed_batches(), store, labels_per_comparison=2).start()
    try:
        assert restarted.current("bob") == first
        assert restarted.current("ann", timeout=0.1) is None
    finally:
        restarted.stop()


def test_stopping_does_not_wait_for_a_batch_being_sampled(tmp_path):
    store = JudgmentStore(f"sqlite:///{tmp_path / 'labels.db'}")
    started = threading.Event()

    def slow() -> list[Comparison]:
        started.set()
        time.sleep(30)
        return []

    feed = ComparisonFeed(slow, store).start()
    assert started.wait(10)
    begin = time.monotonic()
    feed.stop(timeout=0.5)
    assert time.monotonic() - begin < 5


def judgment(uid: str, labeller: str, choice: str, ranking=None) -> Judgment:
    return Judgment(
        comparison=uid,
        prompt="p",
        responses=[" a", " b"],
        choice=choice,
        ranking=ranking,
        labeller=labeller,
        policy="tiny",
        task="t",
        sampling={},
        created_at=datetime.now(UTC),
    )


def test_agreement_between_labellers_by_hand():
    rows = [
        judgment("c1", "ann", "ranked", [0, 1]),
        judgment("c1", "bob", "ranked", [0, 1]),
        judgment("c1", "cat", "ranked", [1, 0]),  # c1: 3 pairs, 1 agrees
        judgment("c2", "ann", "tie"),
        judgment("c2", "bob", "tie"),  # c2: 1 pair, agrees
        judgment("c3", "ann", "ranked", [0, 1]),  # judged once: left out
        judgment("c4", "ann", "skip"),
        judgment("c4", "bob", "ranked", [0, 1]),  # a skip is no outcome: left out
    ]
    # eq. 45: (1 + 1) / (3 + 1)
    assert labeller_agreement(rows) == {"agreement": 0.5, "comparisons": 2, "pairs": 4}
    assert labeller_agreement(rows[5:])["agreement"] is None


def test_report_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    store = JudgmentStore(url)
    first, second = comparison("one", " a", " b"), comparison("two", " c", " d")
    store.record(first, "ann", "ranked", [0, 1])
    store.record(first, "bob", "ranked", [0, 1])
    store.record(second, "ann", "tie")
    store.record(second, "bob", "ranked", [1, 0])
    result = CliRunner().invoke(main, ["label", "report", url])
    assert result.exit_code == 0, result.output
    assert "4 judgments" in result.output
    assert "ann: 2 (ranked 1, tie 1)" in result.output
    assert "agreement between labellers 0.500 on 2 comparisons (2 pairs of labellers)" in (
        result.output
    )
    missing = CliRunner().invoke(main, ["label", "report", url, "--reward-model", "nowhere"])
    assert missing.exit_code != 0 and "is not a trained reward model" in missing.output


def test_a_run_folder_or_checkpoint_is_sampled_on_its_task(tmp_path):
    from rlhf_env.data.models import load_causal_lm

    run = tmp_path / "ppo_tiny"
    run.mkdir()
    (run / "config.yaml").write_text(
        "algorithm: ppo\ntask:\n  id: rlhf_env/Tiny-v0\n  overrides:\n    max_new_tokens: 4\n"
    )
    for name in ("iter_000001", "iter_000002"):
        load_causal_lm("tiny").save_pretrained(run / "checkpoints" / name / "policy")
        (run / "checkpoints" / name / "driver.json").write_text('{"iteration": 1}')

    last = resolve_policy(str(run))
    assert (last.model, last.checkpoint, last.label) == (
        str(run / "checkpoints" / "iter_000002" / "policy"),
        "iter_000002",
        str(run),
    )
    assert (last.task, last.task_overrides) == ("rlhf_env/Tiny-v0", {"max_new_tokens": 4})
    assert resolve_policy(str(run / "checkpoints" / "iter_000001")).checkpoint == "iter_000001"
    initial = resolve_policy(None, "rlhf_env/Tiny-v0")
    assert (initial.model, initial.checkpoint) == ("tiny", None)

    batch = ComparisonSampler(last, SamplingSettings(k=3, prompts_per_batch=2))()
    assert batch and all(len(c.responses) == 3 for c in batch)
    assert {(c.policy, c.checkpoint, c.task) for c in batch} == {
        (str(run), "iter_000002", "rlhf_env/Tiny-v0")
    }
    assert batch[0].sampling["max_new_tokens"] == 4
    (run / "checkpoints" / "iter_000001" / "driver.json").unlink()
    (run / "checkpoints" / "iter_000002" / "driver.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no checkpoint yet"):
        resolve_policy(str(run))


def test_serving_off_loopback_generates_and_requires_a_token(tmp_path):
    """`rlhf-env label serve --host 0.0.0.0` prints a link with a fresh token; requests without
    it get 403, with it the app."""
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "rlhf-env"), "label", "serve", "--policy", "tiny"]
    command += ["--task", "rlhf_env/Tiny-v0", "--host", "0.0.0.0", "--port", str(port)]
    command += ["--db", f"sqlite:///{tmp_path / 'labels.db'}"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        link = next(line for line in server.stdout if line.startswith("open "))[5:].strip()
        assert "?token=" in link and len(link.split("?token=")[1]) >= 32
        base = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                refused = httpx.get(base)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        assert refused.status_code == 403
        token = link.split("?token=")[1]
        assert httpx.get(base, params={"token": token}, follow_redirects=True).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=60)
