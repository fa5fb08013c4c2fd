"""The web operator view in a real headless Chromium against a running fleet.

One small fleet (3 ideal robots, fast) is launched with `fleet-coord launch`, serving the
operator view on a free port; one browser (Debian's chromium through its chromedriver,
Selenium) loads the page. The tests share both, in file order: the page draws the map
and every robot; robots move on the page; tasks submitted from the page are done;
cancel works; a bad task shows its error; the e-stop and remove buttons act.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fleet_coord_msgs.msg", reason="fleet_coord_msgs is built by `make setup`")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in requirements.txt "
                                "(make setup)")
from selenium.webdriver.common.by import By  # noqa: E402

from rosutil import descendants  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (scripts/setup.sh installs them as "
           "root; otherwise: sudo apt-get install chromium chromium-driver)")

FAST = "max_speed: 3.0, max_angular_speed: 20.0"
CONFIG = f"""\
fleet:
  map: warehouse.map
  discovery_range: LOCALHOST
  backend: ideal
  ledger: ledger.sqlite
  operator_view: true
robots:
  - {{name: robot_1, start: [2, 18], {FAST}}}
  - {{name: robot_2, start: [6, 18], {FAST}}}
  - {{name: robot_3, start: [30, 18], {FAST}}}
nodes:
  robot_agent: {{max_acc: 40.0, max_alpha: 400.0, turn_margin: 0.2}}
  ideal_driver: {{max_acc: 40.0, max_alpha: 400.0, rate_hz: 100.0}}
  dispatcher: {{bid_window: 0.3}}
  operator_view: {{push_hz: 5.0}}
"""
#: a screenshot of the page with the fleet at work goes here when set (docs/img/...)
SCREENSHOT = os.environ.get("FLEET_COORD_SCREENSHOT", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout, what, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")


class FleetUnderTest:
    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.port = _free_port()
        cfg = os.path.join(tmp, "fleet.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        self.log = open(os.path.join(tmp, "launch.log"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet_coord.cli", "launch", cfg,
             "--operator-port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def api(self, path, body=None):
        req = urllib.request.Request(self.url + path, method="POST" if body is not None else "GET",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self) -> None:
        children = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in children:   # the launcher's children die with it; make sure
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture(scope="module")
def fleet():
    tmp = tempfile.mkdtemp(prefix="fleet-coord-browser-")
    f = FleetUnderTest(tmp)
    try:
        def up():
            try:
                code, state = f.api("/api/state")
            except OSError:
                return False
            return code == 200 and len(state["robots"]) == 3 and all(
                r["reservations"] for r in state["robots"])   # every robot parked

        def answers():
            # the dispatcher is up and the view's clients found it: an action round-trips
            # (its robots park without it, and on a loaded machine it can come up last)
            return f.api("/api/tasks/no_such_task/cancel", {})[0] == 422
        deadline = time.monotonic() + 180
        for cond, what in ((up, "come up"), (answers, "reach the dispatcher")):
            while not cond():
                if f.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the fleet's operator view did not {what}:\n" + f.tail())
                time.sleep(0.5)
        yield f
    finally:
        f.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(fleet):
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="fleet-coord-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # headless, and nothing that would reach out of this closed network
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1500,900"):
        opts.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=os.path.join(profile, "driver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        driver.set_page_load_timeout(180)   # a loaded machine renders slowly
        driver.get(fleet.url + "/")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# The page redraws its tables and robots at every push (5 Hz), so elements found in one
# call may be gone in the next: read and click through one script each (atomic in the page).
def _robots(driver) -> dict[str, tuple[float, float]]:
    """Robot positions as the page draws them (map metres, from the SVG's data)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#layer-robots g.robot')]"
        ".map(g => [g.dataset.robot, +g.dataset.x, +g.dataset.y])")
    return {name: (x, y) for name, x, y in rows}


def _text(driver, selector: str) -> str:
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''",
        selector)


def _click(driver, selector: str) -> bool:
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return false; "
        "e.click(); return true", selector)


def _task_state(driver, task_id: str) -> str:
    return driver.execute_script(
        "const r = document.querySelector(`#tasks tr[data-task=\"${arguments[0]}\"]`);"
        "return r ? r.dataset.state : ''", task_id)


def _page_says(driver) -> str:
    """What the page tells the operator: for a failure message."""
    return ", ".join(f"{sel} {_text(driver, sel)!r}"
                     for sel in ("#connection", "#task-error", "#action-message"))


def _submit(driver, task_id: str, kind: str, stations: str) -> None:
    driver.find_element(By.ID, "task-id").clear()
    driver.find_element(By.ID, "task-id").send_keys(task_id)
    driver.find_element(By.CSS_SELECTOR, f'#task-kind option[value="{kind}"]').click()
    driver.find_element(By.ID, "task-stations").clear()
    driver.find_element(By.ID, "task-stations").send_keys(stations)
    driver.find_element(By.ID, "task-submit").click()


def test_page_draws_the_map_and_every_robot(fleet, browser):
    _wait(lambda: len(_robots(browser)) == 3, 60, "three robots on the page")
    assert _text(browser, "#connection") == "live"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#layer-obstacles rect")) > 100
    assert len(browser.find_elements(By.CSS_SELECTOR, "#layer-lanes line")) > 100
    rows = browser.execute_script("return [...document.querySelectorAll('#robots tbody tr')]"
                                  ".map(r => r.dataset.robot)")
    assert sorted(rows) == ["robot_1", "robot_2", "robot_3"]
    # every parked robot's held spot is drawn
    held = browser.execute_script("return [...document.querySelectorAll("
                                  "'#layer-reservations .hold')].map(h => h.dataset.robot)")
    assert set(held) == {"robot_1", "robot_2", "robot_3"}
    assert _robots(browser)["robot_1"] == pytest.approx((2.0, 18.0), abs=0.05)


def test_tasks_from_the_page_are_done_and_every_robot_moves_on_it(fleet, browser):
    start = _robots(browser)
    # one short errand near each robot: each is the cheapest bidder for its own
    for tid, station in (("page_1", "2,14"), ("page_2", "6,14"), ("page_3", "30,14")):
        _submit(browser, tid, "goto", station)
        _wait(lambda tid=tid: _task_state(browser, tid), 60,
              lambda tid=tid: f"{tid} in the task table (page: {_page_says(browser)})\n"
                              + fleet.tail())
    assert _text(browser, "#task-error") == ""
    moved: set[str] = set()
    shot = False

    def all_done():
        nonlocal shot
        now = _robots(browser)
        moved.update(r for r, (x, y) in now.items()
                     if abs(x - start[r][0]) + abs(y - start[r][1]) > 0.5)
        if SCREENSHOT and not shot and len(moved) >= 2:
            browser.save_screenshot(SCREENSHOT)   # the fleet at work, for the README
            shot = True
        return all(_task_state(browser, t) == "DONE" for t in ("page_1", "page_2", "page_3"))
    _wait(all_done, 240, "page_1..3 DONE on the page", step=0.1)
    assert moved == {"robot_1", "robot_2", "robot_3"}, (start, _robots(browser))
    assert _text(browser, '#tasks tr[data-task="page_1"] td.robot').startswith("robot_")


def test_cancel_from_the_page(fleet, browser):
    _submit(browser, "page_long", "pick_and_drop", "33,1 2,1")
    _wait(lambda: _click(browser, 'button.cancel[data-task="page_long"]'), 60,
          "a Cancel button for page_long")
    _wait(lambda: _task_state(browser, "page_long") == "CANCELLED", 60,
          lambda: f"page_long CANCELLED (state {_task_state(browser, 'page_long')!r}, error "
                  f"{_text(browser, '#task-error')!r}, message "
                  f"{_text(browser, '#action-message')!r})")
    code, state = fleet.api("/api/state")
    assert next(t for t in state["tasks"] if t["id"] == "page_long")["state"] == "CANCELLED"


def test_a_bad_task_shows_its_error_and_is_not_listed(fleet, browser):
    _submit(browser, "page_bad", "goto", "nowhere")
    err = _wait(lambda: _text(browser, "#task-error"), 60, "an error")
    assert "nowhere" in err
    _submit(browser, "page_bad2", "pick_and_drop", "2,14")     # one station, two needed
    _wait(lambda: "2 station" in _text(browser, "#task-error"), 60,
          "the two-stations error")
    assert _task_state(browser, "page_bad") == "" and _task_state(browser, "page_bad2") == ""
    # the API says the same to scripts, naming the field
    code, body = fleet.api("/api/tasks", {"id": "x", "kind": "fly", "stations": ["2,14"]})
    assert code == 400 and "kind" in body["error"]


def test_estop_and_remove_from_the_page(fleet, browser):
    row = '#robots tr[data-robot="robot_3"]'
    assert _click(browser, row + " button.estop")
    _wait(lambda: "e-stop" in _text(browser, row + " td.mode"), 60, "robot_3 shown e-stopped")
    assert "engaged" in _text(browser, "#action-message")
    assert _click(browser, row + " button.estop")     # release
    _wait(lambda: "e-stop" not in _text(browser, row + " td.mode"), 60, "robot_3 released")
    browser.execute_script("window.confirm = () => true")   # the 'are you sure?' dialog
    assert _click(browser, row + " button.remove")
    _wait(lambda: "robot_3" not in _robots(browser), 60, "robot_3 gone from the map")
    code, body = fleet.api("/api/robots/robot_9/estop", {"engage": True})
    assert code == 422 and "robot_9" in body["error"]
