"""The results UI end to end: `medialens ui` in a subprocess, Debian's chromium driven by Playwright, on
generated media analysed by the real CLI. What AppTest cannot show: the browser renders the pages, the
buttons navigate, and the `<video>` really sits at the linked second. Every test leaves a full-page
screenshot in `.tmp/ui-screens/` for a person to look at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from media_assets.ui.text import link_second, mmss
from tests.media_assets.test_cli import analysed_home, ml
from tests.media_assets.ui.browser import (
    CHROMIUM,
    VIEWPORT,
    launch_chromium,
    screenshot,
    ui_server,
    video_position,
    wait_rendered,
)

pytestmark = pytest.mark.slow
# Streamlit draws a rerun's elements as they arrive, some through lazily loaded components: what a
# page shows is asserted with Playwright's retrying `expect` (up to this long), never read once
SETTLE_MS = 30_000


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    """Debian's chromium must be there in CI (`.ci/apt-deps.sh` installs it); elsewhere its absence skips."""
    if CHROMIUM.is_file():
        return
    reason = f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/apt-deps.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def analysed(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], dict[str, str]]:
    """Analysed once: talk.mp4 (slides, speech; its faces are too small to be anyone), speech.mp3,
    astronaut.png (one face: the one person to name) and wheel.png, scikit-image's colour wheel, which
    NudeNet takes for skin (verdict "review": the one media in the review queue)."""
    from PIL import Image
    from skimage import data

    base = tmp_path_factory.mktemp("browser")
    wheel = base / "wheel.png"
    Image.fromarray(data.colorwheel()).save(wheel)
    files = [samples["talk.mp4"], samples["speech.mp3"], samples["astronaut.png"], wheel]
    return analysed_home(base, files)


@pytest.fixture(scope="module")
def base(analysed: tuple[dict[str, str], dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `medialens ui` for the module, on that home: its base URL."""
    env, _ = analysed
    with ui_server(env, tmp_path_factory.mktemp("ui-log") / "medialens-ui.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context per test: its own Streamlit session, nothing carried over."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_search_hit_opens_the_player_at_its_second(
    base: str, page: Any, analysed: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, keys = analysed
    p = ml(env, "search", "crane offline", "--json")
    assert p.returncode == 0, p.stderr
    cli_hit = next(h for h in json.loads(p.stdout)["hits"] if h["key"] == keys["talk.mp4"] and h["source"] == "ocr")
    second = link_second(cli_hit["start"], seen=True)  # a slide's line: the first whole second it shows
    assert 4 <= second <= 8, cli_hit  # the "Crane offline at pier 4" slide

    page.goto(f"{base}/?q={quote('crane offline')}")
    wait_rendered(page)
    row = page.get_by_test_id("stHorizontalBlock").filter(has_text="talk.mp4 · text on screen ·").first
    expect(row).to_contain_text(f"· text on screen · {mmss(second)} ·", timeout=SETTLE_MS)  # the CLI's second
    expect(row).to_contain_text("Crane offline at pier 4")
    screenshot(page, "search")
    row.get_by_role("button", name=f"Open at {mmss(second)}").click()
    page.wait_for_url(f"**/?media={keys['talk.mp4']}&t={second}")
    wait_rendered(page)
    assert video_position(page, second) == pytest.approx(second, abs=1)
    expect(page.get_by_role("heading", name="Crane offline at pier 4")).to_have_count(1)  # the summary's title
    screenshot(page, "search-hit-media")


def test_media_deep_link_starts_the_player_there(
    base: str, page: Any, analysed: tuple[dict[str, str], dict[str, str]]
) -> None:
    _, keys = analysed
    page.goto(f"{base}/?media={keys['talk.mp4']}&t=12")
    wait_rendered(page)
    assert video_position(page, 12) == pytest.approx(12, abs=1)
    assert page.eval_on_selector("video", "v => v.paused")  # it rests there: no autoplay moved it
    screenshot(page, "media")


def test_naming_a_person_in_the_ui_is_what_the_cli_shows(
    base: str, page: Any, analysed: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, _ = analysed
    before = json.loads(ml(env, "people", "--json").stdout)["persons"]
    (astronaut,) = before  # the photo's face; the talk's are too small to be anyone
    pid = astronaut["person_id"]
    assert astronaut["name"] is None

    page.goto(f"{base}/?page=people")
    wait_rendered(page)
    screenshot(page, "people")
    page.get_by_role("button", name=pid, exact=True).click()  # anonymous: the grid shows its id
    page.wait_for_url(f"**/?person={pid}")
    wait_rendered(page)
    page.get_by_label("Name", exact=True).fill("Eileen Collins")
    page.get_by_role("button", name="Save name").click()
    # the page's notice after the decision and the re-clustering run it starts (an error one fails here)
    notice = page.get_by_test_id("stAlert").first
    notice.wait_for(timeout=180_000)
    expect(notice).to_contain_text("Named")
    expect(notice).to_contain_text("Eileen Collins")
    wait_rendered(page)
    expect(page.get_by_role("heading", name="Eileen Collins")).to_have_count(1, timeout=SETTLE_MS)  # the title
    screenshot(page, "person-named")

    p = ml(env, "people", "--json")
    assert p.returncode == 0, p.stderr
    assert [(x["person_id"], x["name"]) for x in json.loads(p.stdout)["persons"]] == [(pid, "Eileen Collins")]


def test_approving_a_review_item_records_it_and_shortens_the_queue(
    base: str, page: Any, analysed: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, keys = analysed
    key = keys["wheel.png"]
    queue = [i["key"] for i in json.loads(ml(env, "review", "--json").stdout)["queue"]]
    assert queue == [key]  # in the queue: no approve/reject applies to it yet

    page.goto(f"{base}/?page=review")
    wait_rendered(page)
    approve = page.get_by_role("button", name="Approve", exact=True)
    expect(approve).to_have_count(1, timeout=SETTLE_MS)  # one media waiting, with its decision buttons
    expect(page.get_by_role("heading", name="wheel.png · review")).to_have_count(1)
    screenshot(page, "review")
    approve.click()
    notice = page.get_by_test_id("stAlert").first
    notice.wait_for(timeout=60_000)
    expect(notice).to_contain_text("approved")
    wait_rendered(page)
    # the rest of the rerun: the queue in the page is shorter (empty now), the decision under "Decided"
    expect(page.get_by_text("wheel.png · approve · verdict review")).to_have_count(1, timeout=SETTLE_MS)
    expect(page.get_by_text("Nothing to review")).to_have_count(1)
    expect(approve).to_have_count(0)
    screenshot(page, "review-approved")

    shown = json.loads(ml(env, "show", key, "--json").stdout)["safety"]["review"]
    assert shown is not None and shown["decision"] == "approve"
    assert json.loads(ml(env, "review", "--json").stdout)["queue"] == []


def test_library_lists_every_media_uploads_and_opens_one(
    base: str, page: Any, analysed: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    from PIL import Image

    env, keys = analysed
    page.goto(f"{base}/?page=library")
    wait_rendered(page)
    expect(page.get_by_role("heading", name="Library")).to_have_count(1, timeout=SETTLE_MS)
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=SETTLE_MS)
    screenshot(page, "library")
    # an upload lands whole in the inbox under its name (the sensor takes it from there)
    photo = tmp_path / "upload.png"
    Image.new("RGB", (320, 240), "teal").save(photo)
    page.locator("input[type=file]").set_input_files(str(photo))
    expect(page.get_by_text("upload.png").first).to_be_visible(timeout=SETTLE_MS)
    page.get_by_role("button", name="Add to the inbox").click()
    expect(page.get_by_text("added to the inbox", exact=False).first).to_be_visible(timeout=SETTLE_MS)
    landed = Path(env.get("MEDIALENS_INBOX") or Path(env["MEDIALENS_HOME"]) / "inbox") / "upload.png"
    assert landed.read_bytes() == photo.read_bytes()
    screenshot(page, "library-uploaded")
    page.get_by_test_id("stBaseButton-primary").filter(has_text="Open").click()  # the selected media's page
    page.wait_for_url("**/?media=*")
    assert page.url.split("media=")[1].split("&")[0] in keys.values()
