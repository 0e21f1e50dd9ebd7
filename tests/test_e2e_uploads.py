"""Browser end-to-end: hostile upload names render as plain text in Chromium (what AppTest cannot see:
Streamlit's own Markdown pipeline, e.g. GFM literal autolinks found after escapes are resolved).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_e2e_browser import CHROMIUM, IDLE_JS, server  # noqa: F401 (the fixture: a real `streamlit run app.py`)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]

NAMES = {
    "link": "[Re-upload here](https:example.com).png",
    "html": "<img src=x onerror=alert(1)><b>bold<b>.png",
    "autolink": "www.example.com mail@example.com.png",
    "directives": ":red[alarm] $x^2$ **strong**.png",
    "rtl": "invoice\u202egnp.exe.png",
    "long": "A" * 300 + ".png",
}

PAGE_FACTS_JS = """() => {
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
    .filter(h => /example|javascript|mailto/i.test(h));
  const alerts = [...document.querySelectorAll("[data-testid='stAlertContainer']")].map(e => e.innerText);
  return {
    links,
    alerts,
    injectedImages: [...document.querySelectorAll('img')].filter(i => i.getAttribute('src') === 'x').length,
    injectedBold: [...document.querySelectorAll('b, strong')]
      .filter(e => /^(bold|strong)$/.test(e.textContent)).length,
    formulas: document.querySelectorAll('.katex').length,
    colouredAlarm: [...document.querySelectorAll('span')]
      .filter(s => s.textContent === 'alarm' && s.className).length,
    bodyText: document.body.innerText,
  };
}"""


def test_hostile_names_are_plain_text_in_the_browser(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    bodies = {k: f"not an image: {k}".encode() for k in NAMES}
    files = [{"name": n, "mimeType": "image/png", "buffer": bodies[k]} for k, n in NAMES.items()]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server, wait_until="domcontentloaded")
        uploader = page.get_by_test_id("stFileUploaderDropzoneInput")
        uploader.wait_for(state="attached", timeout=60_000)
        uploader.set_input_files(files)
        page.get_by_test_id("stAlertContainer").filter(has_text="onerror").first.wait_for(timeout=60_000)
        page.get_by_test_id("stAlertContainer").filter(has_text="AAAA").first.wait_for(timeout=60_000)
        # the run that answers the uploads has finished: no stale element of the first page's run is left
        page.wait_for_function(IDLE_JS, timeout=120_000)
        facts = page.evaluate(PAGE_FACTS_JS)
        browser.close()
    assert facts["links"] == []
    assert facts["injectedImages"] == 0 and facts["injectedBold"] == 0
    assert facts["formulas"] == 0 and facts["colouredAlarm"] == 0
    text = facts["bodyText"].replace("\u2060", "")  # word joiners (invisible) split autolinks
    for literal in ("[Re-upload here](https:example.com).png", "<img src=x onerror=alert(1)><b>bold<b>.png",
                    "www.example.com mail@example.com.png", ":red[alarm] $x^2$ **strong**.png",
                    "'invoicegnp.exe.png'"):  # fmt: skip
        assert literal in text, literal
    assert not any("\u202e" in a for a in facts["alerts"])  # (the uploader's own file list shows raw names)
    long_alert = next(a for a in facts["alerts"] if "AAAA" in a)
    assert "A" * 61 not in long_alert and "…" in long_alert and ".png" in long_alert
    # nothing is analysed for rejected files: no sample's report under the errors
    assert "No study is analysed" in text
