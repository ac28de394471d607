"""Opens a URL in headless chromium over the DevTools protocol, waits in
real time, takes the steps given (real key presses through the browser's
input pipeline, scripts, waits), and prints as JSON the value of a
JavaScript expression and every console error, uncaught exception and
failed request meanwhile.

Usage: cdp_eval.py URL SECONDS EXPRESSION [STEP...]
where a STEP is key:NAME (ArrowDown, ArrowRight, Enter, End...),
js:EXPRESSION or wait:SECONDS.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client, installed by scripts/install-test-deps.sh

# Windows virtual key codes, which chromium needs to act on a key.
KEY_CODES = {"Enter": 13, "Tab": 9, "Escape": 27, "End": 35, "Home": 36, "ArrowLeft": 37,
             "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, "PageUp": 33, "PageDown": 34}


def main():
    url, seconds, expression = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    steps = sys.argv[4:]
    profile = tempfile.mkdtemp(prefix="sluice-cdp-")
    browser = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 20
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.time() > deadline:
                raise SystemExit("chromium wrote no DevToolsActivePort")
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(p for p in pages if p["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=5)
        ids = iter(range(1, 1_000_000))
        problems = []

        def send(method, **params):
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            return n

        def pump(until, want=None):
            while True:
                ws.settimeout(max(0.01, until - time.time()))
                try:
                    msg = json.loads(ws.recv())
                except websocket.WebSocketTimeoutException:
                    return None
                if want is not None and msg.get("id") == want:
                    return msg
                m, p = msg.get("method"), msg.get("params", {})
                if m == "Runtime.exceptionThrown":
                    problems.append("exception: " + json.dumps(p["exceptionDetails"].get("exception", {}).get("description") or p["exceptionDetails"].get("text")))
                elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                    problems.append("log: " + p["entry"].get("text", ""))
                elif m == "Runtime.consoleAPICalled" and p["type"] == "error":
                    problems.append("console: " + json.dumps([a.get("value") for a in p["args"]]))
                elif m == "Network.loadingFailed" and not p.get("canceled"):
                    problems.append("request failed: " + p.get("errorText", ""))
                if time.time() >= until:
                    return None

        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            pump(time.time() + 5, send(method))
        pump(time.time() + 5, send("Page.navigate", url=url))
        pump(time.time() + seconds)
        for step in steps:
            kind, _, arg = step.partition(":")
            if kind == "key":
                down = {"type": "keyDown", "key": arg, "code": arg,
                        "windowsVirtualKeyCode": KEY_CODES[arg]}
                if arg == "Enter":
                    down["text"] = "\r"
                pump(time.time() + 5, send("Input.dispatchKeyEvent", **down))
                pump(time.time() + 5, send("Input.dispatchKeyEvent", type="keyUp", key=arg, code=arg,
                                           windowsVirtualKeyCode=KEY_CODES[arg]))
                # Time for what the key started (a fetch, a redraw).
                pump(time.time() + 0.4)
            elif kind == "js":
                pump(time.time() + 5, send("Runtime.evaluate", expression=arg))
            elif kind == "wait":
                pump(time.time() + float(arg))
            else:
                raise SystemExit(f"unknown step {step!r}")
        reply = pump(time.time() + 5, send("Runtime.evaluate", expression=expression, returnByValue=True))
        value = (reply or {}).get("result", {}).get("result", {}).get("value")
        print(json.dumps({"value": value, "problems": problems}))
        ws.close()
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


main()
