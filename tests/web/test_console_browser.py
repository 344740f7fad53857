"""The web console in a real headless Chromium against the toy agent: streams listed, a question answered
right, and the evidence picture it shows holds the needle (pixels checked against the world's truth)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streams.synth import COLORS
from tests.web.conftest import RunningAgent

pytestmark = [pytest.mark.services, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Set to a path (e.g. docs/console.png) to keep a screenshot of the console after the question.
SCREENSHOT = os.environ.get("FSA_CONSOLE_SCREENSHOT")
COLOR_TOLERANCE = 60.0  # Euclidean RGB distance a JPEG-compressed needle pixel stays within


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (scripts/install.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def picture_pixels(driver: object, element: object) -> np.ndarray:
    """The (H, W, 3) RGB pixels of an <img> as the browser decoded it (drawn into a canvas)."""
    data = driver.execute_script(  # type: ignore[attr-defined]
        """const img = arguments[0];
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const ctx = canvas.getContext('2d');
        ctx.drawImage(img, 0, 0);
        const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        return [canvas.width, canvas.height, Array.from(px)];""",
        element,
    )
    width, height, rgba = data
    return np.array(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def test_console_lists_streams_answers_a_question_and_shows_the_needle(
    toy_agent: RunningAgent, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    truth = toy_agent.truth
    question = next(q for q in truth.questions if q.kind == "color")
    needle = next(n for n in truth.needles if n.id in question.needle_ids)
    driver = browser
    wait = WebDriverWait(driver, 60)
    driver.get(toy_agent.base_url + "/")  # type: ignore[attr-defined]

    card = wait.until(ec.presence_of_element_located((By.ID, "stream-cam")))
    wait.until(lambda d: card.find_element(By.CSS_SELECTOR, ".state").text == "ended")
    tokens = truth.frame_count // 2 * 4  # a 56x56 frame pair is 2x2 merged tokens
    assert f"{tokens} / 32768 tokens" in card.find_element(By.CSS_SELECTOR, ".memory").text
    assert card.find_element(By.CSS_SELECTOR, ".reconnects").text == "0"

    driver.find_element(By.ID, "ask-question").send_keys(question.question)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "ask-submit").click()  # type: ignore[attr-defined]
    answer = wait.until(ec.visibility_of_element_located((By.ID, "answer-text")))
    wait.until(lambda d: answer.text.strip() != "")
    assert answer.text == question.answer

    picture = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "img.evidence-picture")))
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    wait.until(lambda d: d.execute_script(loaded, picture))
    assert driver.find_elements(By.CSS_SELECTOR, ".timeline .span")  # type: ignore[attr-defined]
    pixels = picture_pixels(driver, picture).astype(np.float32)
    assert pixels.shape == (truth.config.height, truth.config.width, 3)

    x, y, w, h = needle.box
    near = np.linalg.norm(pixels - np.array(COLORS[needle.color], np.float32), axis=-1) < COLOR_TOLERANCE
    box = np.zeros(near.shape, dtype=bool)
    box[y : y + h, x : x + w] = True
    inside, outside = near[box].mean(), near[~box].mean()
    assert inside > 0.2, f"the evidence picture shows no {needle.color} needle in its box {needle.box}"
    assert outside < 0.02, "the needle's color is spread outside its box: not the needle's frame"
    watch_row = driver.find_element(By.CSS_SELECTOR, "#watches tbody tr")  # type: ignore[attr-defined]
    assert watch_row.text.startswith("color-watch " + question.question)
    event = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#events li")))
    assert "color-watch" in event.text and event.find_element(By.TAG_NAME, "img").get_attribute("src")
    if SCREENSHOT:
        driver.set_window_size(1280, 1150)  # type: ignore[attr-defined]  # down to the recent events
        driver.save_screenshot(SCREENSHOT)  # type: ignore[attr-defined]
