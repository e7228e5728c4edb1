#!/usr/bin/env python3
"""Checks a rendered servegate HTML report in headless Chromium.

    check.py BROWSER PAGE.html [--expect JSON] [--mutate KIND] [--want-fail]

Copies PAGE next to itself with capture.js first in <head> and check.js
last in <body> (the report itself stays script-free), loads the copy with
`--dump-dom`, reads the JSON verdict the script wrote into <pre id="verdict">
and prints it. Exit 0 when the verdict is ok (with --want-fail: when it is
not), 1 otherwise.

--mutate breaks the copy on purpose, for the self-test:
  overlap   a second copy of a quality-chart label drawn 4 px beside it;
  no-label  a chart's x-axis label removed;
  empty     a heading with nothing under it.
"""

import argparse
import html
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def mutate(page, kind):
    """The page broken in one way; fails when the page has nothing to break."""
    if kind == "overlap":
        fig = re.search(r'<figure class="chart" data-chart="quality".*?</figure>', page, re.S)
        assert fig, "no quality chart to put overlapping labels in"
        svg = fig.group(0)
        # The labels under the axis share a line: the lowest line with two
        # or more (the legend's line is at the top); the second is moved
        # onto the first, as a layout that ignored their widths would.
        labels = list(re.finditer(r'<text x="(-?[\d.]+)" y="(-?[\d.]+)"([^>]*)>([^<]+)</text>', svg))
        rows = {}
        for t in labels:
            rows.setdefault(float(t.group(2)), []).append(t)
        row = max((y for y, ts in rows.items() if len(ts) > 1 and y > 40), default=None)
        assert row is not None, "no line of labels under the quality chart's axis"
        first, second = rows[row][0], rows[row][1]
        moved = '<text x="%s" y="%s"%s>%s</text>' % (
            float(first.group(1)) + 6, second.group(2), second.group(3), second.group(4))
        broken = svg[: second.start()] + moved + svg[second.end():]
        return page.replace(svg, broken)
    if kind == "no-label":
        fig = re.search(r'<figure class="chart"[^>]*data-x-label="([^"]+)"[^>]*>.*?</figure>', page, re.S)
        assert fig, "no chart with an x label"
        want = fig.group(1)
        svg = fig.group(0)
        broken = re.sub(r"<text[^>]*>\s*%s\s*</text>" % re.escape(want), "", svg)
        assert broken != svg, "the x label was not found as text"
        return page.replace(svg, broken)
    if kind == "empty":
        at = page.index("<h2")
        return page[:at] + "<h2 id=\"nothing\">Nothing here</h2>\n" + page[at:]
    raise SystemExit("unknown mutation " + kind)


def instrumented(page, expect):
    read = lambda name: open(os.path.join(HERE, name), encoding="utf-8").read()
    head = "<script>%s</script>" % read("capture.js")
    tail = '<pre id="verdict"></pre><script>window.__renderCheckExpect = %s;\n%s</script>' % (
        json.dumps(expect),
        read("check.js"),
    )
    page = page.replace("<head>", "<head>" + head, 1)
    at = page.rindex("</body>")
    return page[:at] + tail + page[at:]


def dump_dom(browser, path):
    profile = tempfile.mkdtemp(prefix="render-check-")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--user-data-dir=" + profile, "--window-size=1400,2400",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        "--dump-dom", "file://" + os.path.abspath(path),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    subprocess.run(["rm", "-rf", profile])
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("browser")
    ap.add_argument("page")
    ap.add_argument("--expect", default="{}")
    ap.add_argument("--mutate")
    ap.add_argument("--want-fail", action="store_true")
    args = ap.parse_args()

    page = open(args.page, encoding="utf-8").read()
    if args.mutate:
        page = mutate(page, args.mutate)
    base, _ = os.path.splitext(args.page)
    checked = "%s.checked%s.html" % (base, "-" + args.mutate if args.mutate else "")
    with open(checked, "w", encoding="utf-8") as f:
        f.write(instrumented(page, json.loads(args.expect)))

    p = dump_dom(args.browser, checked)
    m = re.search(r'<pre id="verdict">(.*?)</pre>', p.stdout, re.S)
    if not m or not m.group(1).strip():
        print("no verdict from the browser (the check script did not run)", file=sys.stderr)
        print(p.stderr[-3000:], file=sys.stderr)
        return 1
    verdict = json.loads(html.unescape(m.group(1)))
    # Console errors the browser logged (syntax errors included, which the
    # page's own hooks cannot see).
    for line in p.stderr.splitlines():
        if ":CONSOLE" in line and ("Uncaught" in line or "ERROR:CONSOLE" in line):
            verdict["ok"] = False
            verdict["problems"].append("browser console: " + line.strip())

    name = os.path.basename(args.page) + (" (" + args.mutate + ")" if args.mutate else "")
    s = verdict["stats"]
    print("%s: %s — %d charts, %d text labels; %s" % (
        name, "ok" if verdict["ok"] else "FAILED", s["charts"], s["texts"],
        ", ".join("%s %d" % kv for kv in sorted(s["kinds"].items())) or "no charts"))
    for problem in verdict["problems"][:40]:
        print("  - " + problem)
    if len(verdict["problems"]) > 40:
        print("  … and %d more" % (len(verdict["problems"]) - 40))
    if args.want_fail:
        if verdict["ok"]:
            print("self-test: the check passed a page broken on purpose (%s)" % args.mutate)
            return 1
        print("self-test: the check caught it, as it must")
        return 0
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
