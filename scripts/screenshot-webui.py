#!/usr/bin/env python3
"""scripts/screenshot-webui.py - the picture of the chat page in the README
(docs/chat.png): a two-turn conversation with a live `kvlm serve` in headless
Chromium (the set-up of the browser test, tests/server/webui_browser.py), the second
reply showing the tokens it took from the KV cache, at a viewport of exactly
WIDTHxHEIGHT, written as a losslessly re-compressed PNG.
scripts/screenshot-webui.sh starts the server and runs this.

    screenshot-webui.py --url http://127.0.0.1:PORT --out docs/chat.png [--size 1280x720]
        [--chromium /usr/bin/chromium] [--chromedriver /usr/bin/chromedriver]
"""
import argparse
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "server"))
from webui_browser import Page, api, chromium, wait  # noqa: E402

TURNS = (("Why is the sky blue?", 48), ("Say it in one short sentence.", 32))   # (message, max tokens)


# ---- PNG: Chromium's screenshot, re-compressed ------------------------------------------
def png_rows(data):
    """(width, height, color type, bytes per pixel, rows) of an 8-bit RGB or RGBA,
    non-interlaced PNG (what Chromium writes), each row unfiltered."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    i, idat = 8, []
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        body = data[i + 8:i + 8 + n]
        i += 12 + n
        if kind == b"IHDR":
            w, h, depth, ct, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ct not in (2, 6) or interlace:
                raise ValueError(f"unexpected PNG format (depth {depth}, color type {ct}, interlace {interlace})")
        elif kind == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    bpp = 3 if ct == 2 else 4
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        r = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride if f else 0):   # the filters of the PNG spec (1-4), undone in place
            a = r[x - bpp] if x >= bpp else 0
            if f == 1:
                r[x] = (r[x] + a) & 255
            elif f == 2:
                r[x] = (r[x] + prev[x]) & 255
            elif f == 3:
                r[x] = (r[x] + ((a + prev[x]) >> 1)) & 255
            elif f == 4:
                b, c = prev[x], prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                r[x] = (r[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(r))
        prev = r
    return w, h, ct, bpp, rows


def png_write(w, h, ct, rows, up):
    """The PNG of rows: every row unfiltered, or (up) every row as its difference from
    the row above; zlib at level 9."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    prev = bytes(len(rows[0]))
    out = bytearray()
    for r in rows:
        out += b"\x02" + bytes((x - y) & 255 for x, y in zip(r, prev)) if up else b"\x00" + r
        prev = r
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ct, 0, 0, 0)) +
            chunk(b"IDAT", z.compress(bytes(out)) + z.flush()) + chunk(b"IEND", b""))


def png_optimise(data):
    """The smallest of Chromium's PNG and two lossless re-encodings of its pixels
    (an opaque RGBA image loses its alpha channel). A page of flat colours and text
    compresses best unfiltered: 103 KB -> 81 KB at 1280x717."""
    w, h, ct, bpp, rows = png_rows(data)
    if ct == 6 and all(r[k] == 255 for r in rows for k in range(3, len(r), 4)):
        rows = [bytes(b for k, b in enumerate(r) if k % 4 != 3) for r in rows]
        ct = 2
    return min([data] + [png_write(w, h, ct, rows, up) for up in (False, True)], key=len)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    with chromium(a.chromium, a.chromedriver, viewport=size) as d:
        p = Page(d)
        d.get(a.url + "/")
        if not p.model_shown():
            sys.exit("screenshot-webui: the page named no model (GET /v1/models failed?)")
        p.set_field("temperature", 0)
        for text, max_tokens in TURNS:
            p.set_field("max-tokens", max_tokens)
            p.say(text)
            if not p.wait_reply() or p.reply_state() != "done":
                sys.exit(f"screenshot-webui: the reply to {text!r} did not finish: {p.reply_state()}")
        cached = int(p.last_reply().get_attribute("data-cached-tokens") or 0)
        if cached <= 0:
            sys.exit("screenshot-webui: the second turn took no tokens from the cache")
        c = api(a.url, "/v1/kvlm/cache")   # idle now: the gauge shows these once it polled
        if not wait(lambda: p.gauge() == {"in-use": c["blocks_in_use"], "cached": c["blocks_cached"],
                                          "free": c["blocks_free"], "total": c["blocks_total"]}, 4):
            sys.exit(f"screenshot-webui: the gauge {p.gauge()} never showed GET /v1/kvlm/cache's {c}")
        d.execute_script("document.activeElement && document.activeElement.blur()")
        png = d.get_screenshot_as_png()
    out = png_optimise(png)
    with open(a.out, "wb") as f:
        f.write(out)
    w, h = struct.unpack(">II", out[16:24])
    print(f"screenshot-webui: {a.out}: {w}x{h}, {len(out)} bytes (Chromium's: {len(png)}); "
          f"turn 2 took {cached} prompt tokens from the cache")


if __name__ == "__main__":
    main()
