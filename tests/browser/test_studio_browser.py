"""The studio in a real headless Chromium: generate a pair, move a slider, vote blind in the arena, find the vote in
the database, open the dashboard and export. Screenshots of every tab (see conftest for where they go).

The tests share one page and run in file order, like a person going through the tabs.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

TIMEOUT_MS = 120_000  # one generation is ~1 s; a cold model load on a busy 2-core machine can take a minute
LABEL_WORDS = ("baseline", "guided", "toy-sdxl", "toy-sd3", "β=", "best-of", "importance")


@pytest.fixture(scope="module")
def page(browser, studio_server):
    url, _ = studio_server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#explore-generate")
    yield page
    context.close()


def shot(page, screenshots, name):
    page.evaluate("document.querySelectorAll('.toast-close').forEach(b => b.click())")  # earlier tabs' notes
    page.wait_for_timeout(400)  # let the last layout settle
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def image_src(page, elem_id: str) -> str:
    image = page.locator(f"#{elem_id} img").first
    image.wait_for(state="visible")
    return image.get_attribute("src") or ""


def test_explore_pair_then_a_slider_moves_only_the_aligned_image(page, screenshots):
    page.fill("#explore-prompt textarea", "a red star on a blue background")
    page.click("#explore-generate")
    page.wait_for_function("document.querySelector('#explore-info')?.innerText.includes('seed 0')")
    baseline_src, aligned_src = image_src(page, "explore-baseline"), image_src(page, "explore-aligned")
    assert baseline_src and aligned_src and baseline_src != aligned_src
    for caption in ("#explore-baseline-reward", "#explore-aligned-reward"):
        assert re.search(r"\d+\.\d{3}", page.inner_text(caption)), "a reward under every image"
    shot(page, screenshots, "explore-diffusion")

    # move β with the mouse: a click on the track sets it and the pointer's release regenerates
    track = page.locator("#explore-beta input[type=range]")
    box = track.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    beta = float(page.input_value("#explore-beta input[type=number]"))
    assert beta != 0.5
    page.wait_for_function(f"document.querySelector('#explore-info')?.innerText.includes('β={beta:g}')")
    assert "from the cache" in page.inner_text("#explore-baseline-reward"), "the baseline is not made again"
    assert image_src(page, "explore-baseline") == baseline_src
    assert image_src(page, "explore-aligned") != aligned_src


def test_explore_flow_shows_best_of_n_and_the_ess(page, screenshots):
    page.click("#explore-model input")
    page.get_by_role("option", name="toy-sd3").click()
    page.locator("#explore-n").wait_for(state="visible")
    page.click("#explore-generate")
    page.wait_for_function("document.querySelector('#explore-info')?.innerText.includes('ESS per step')")
    assert re.search(r"\d+\.\d{3}", page.inner_text("#explore-bon-reward"))
    page.locator("#explore-ess .js-plotly-plot").first.wait_for(state="visible")
    shot(page, screenshots, "explore-flow")


def test_arena_vote_is_blind_then_revealed_and_stored(page, screenshots, studio_server):
    _, data = studio_server
    page.get_by_role("tab", name="Arena").click()
    page.click("#arena-new")
    page.locator("#arena-vote-left").wait_for(state="visible")
    assert page.locator("#arena-next").is_hidden()
    left, right = image_src(page, "arena-left"), image_src(page, "arena-right")
    # before the vote nothing on the page or in the images' addresses names a configuration
    for element in ("#arena-left", "#arena-right", "#arena-reveal", "#arena-status", "#arena-left-reward",
                    "#arena-right-reward"):
        shown = page.inner_text(element).lower()
        assert not any(word in shown for word in LABEL_WORDS), (element, shown)
    for src in (left, right):
        assert not any(word in src.lower() for word in LABEL_WORDS), src
    shot(page, screenshots, "arena-before-vote")

    page.click("#arena-vote-left")
    page.wait_for_function("document.querySelector('#arena-reveal')?.innerText.includes('You chose')")
    reveal = page.inner_text("#arena-reveal")
    assert "Left:" in reveal and "Right:" in reveal and "toy-" in reveal
    page.locator("#arena-next").wait_for(state="visible")  # in place of the vote buttons, now hidden
    assert page.locator("#arena-vote-left").is_hidden()
    shot(page, screenshots, "arena-after-vote")

    with sqlite3.connect(data / "studio.sqlite") as db:
        votes = db.execute("SELECT choice, session_id FROM votes").fetchall()
        left_label = db.execute("SELECT g.label FROM votes v JOIN comparisons c ON c.id = v.comparison_id "
                                "JOIN generations g ON g.id = c.left_generation_id").fetchone()[0]
    assert [choice for choice, _ in votes] == ["left"]
    assert left_label in reveal.replace("\\", "")

    page.click("#arena-next")
    page.locator("#arena-vote-left").wait_for(state="visible")
    assert page.inner_text("#arena-reveal").strip() == ""
    assert image_src(page, "arena-left") not in (left, right) or image_src(page, "arena-right") not in (left, right)


def test_dashboard_shows_the_vote_and_exports(page, screenshots):
    page.get_by_role("tab", name="Dashboard").click()
    page.wait_for_function("document.querySelector('#dashboard-summary')?.innerText.includes('1 vote ')")
    page.locator("#dashboard-plot-1 .js-plotly-plot").first.wait_for(state="visible")
    shot(page, screenshots, "dashboard")
    page.get_by_text("Export", exact=True).click()
    page.click("#dashboard-export-csv")
    link = page.locator("#dashboard-file a").first
    link.wait_for(state="visible")
    assert ".csv" in (link.get_attribute("href") or "") + link.inner_text()
