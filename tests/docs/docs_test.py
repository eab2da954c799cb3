#!/usr/bin/env python3
"""tests/docs/docs_test.py - the docs cannot drift from what they describe. Each table
or block of docs/ that exists elsewhere too is compared with that other place:

  cli.md     every "$ kvlm ... --help" block = that command's output, byte for byte;
             the commands table = the commands `kvlm --help` lists, and each command's
             --help text is one of the blocks
  http.md    the endpoint table = the routes of handle() in src/server/serve.c, and the
             live server answers each as documented (no 404/405 with its method, 405
             with another, 401 without the key exactly where the table says "key");
             the request field table = FIELDS of src/server/api_req.c (names and
             endpoints); the form field table = FIELD_NAMES of src/server/api_audio.c;
             the usage and GET /v1/kvlm/cache field tables = the fields of live
             answers; every JSON example has the fields (recursively) of a live answer
             of its kind, and every kind of answer has an example; the metric table =
             what GET /metrics sends (names, types, labels, # HELP text)
  c-api.md   the function tables = the functions include/kvlm.h declares = the kvlm_
             functions build/libkvlm.a defines; every kvlm_/KVLM_ name on the page is
             in the header; the example program compiles (-Wall -Wextra -Werror)
  README.md  its first screen: a title, a paragraph of at most three lines, `make run`
             and `make test`, the picture docs/chat.png (a PNG of about 1280x720, under
             200 KB); every docs/ page is linked from it
  all        every relative link of README.md and docs/*.md names an existing file, and
             its #anchor a heading there (GitHub's rule for anchors)

Stdlib only (system python3). The server (started by docs_test.sh) runs with
--api-key KEY and a disk tier, so every metric family and the auth rules show.
Prints "ok"/"FAIL" lines, then "N passed, N failed".

    docs_test.py --build build --url http://127.0.0.1:PORT --key KEY
"""
import argparse
import difflib
import json
import os
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"), flush=True)
    return ok


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def set_diff(doc, real):
    """What a documented set lacks and what it has too many of, for a failure message."""
    return f"missing from the docs {sorted(real - doc)}, documented but not there {sorted(doc - real)}"


# ---- markdown ----------------------------------------------------------------------------
def md_blocks(text):
    """[(language, [lines])] of the fenced code blocks."""
    out, cur, lang = [], None, ""
    for line in text.split("\n"):
        if line.startswith("```"):
            if cur is None:
                cur, lang = [], line[3:].strip()
            else:
                out.append((lang, cur))
                cur = None
        elif cur is not None:
            cur.append(line)
    return out


def cells(line):
    """The cells of a table row; "\\|" stays inside a cell."""
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|") for p in parts]


def md_tables(text):
    """[(section heading, header cells, [row cells])] outside code blocks."""
    out, section, in_code, lines = [], "", False, text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            section = line.lstrip("#").strip()
        elif not in_code and line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|$", lines[i + 1]):
            header, rows = cells(line), []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            out.append((section, tuple(header), rows))
            continue
        i += 1
    return out


def table(doc, text, header, section=None):
    """The rows of the table of doc with this header (in this section); [] and a
    failure when there is none."""
    for sec, h, rows in md_tables(text):
        if h == header and (section is None or sec == section):
            return rows
    check(f"{doc}: a table | {' | '.join(header)} |" + (f" under '{section}'" if section else ""), False, "not found")
    return []


def ticked(cell):
    return re.findall(r"`([^`]+)`", cell)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped,
    spaces to '-'."""
    h = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return h.replace(" ", "-")


# ---- cli.md ------------------------------------------------------------------------------
def kvlm(build, *args):
    p = subprocess.run([os.path.join(build, "kvlm"), *args], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout


def test_cli(build):
    text = read("docs/cli.md")
    helps = {}                                  # "serve --help" -> the documented text
    for _, lines in md_blocks(text):
        m = re.match(r"^\$ kvlm ((?:\S+ )*--help)$", lines[0]) if lines else None
        if m:
            helps[m.group(1)] = "\n".join(lines[1:])
    check(f"cli.md: {len(helps)} --help blocks", len(helps) > 0, "no '$ kvlm ... --help' block")
    for args, want in helps.items():
        rc, out = kvlm(build, *args.split())
        got = out.rstrip("\n")
        diff = list(difflib.unified_diff(want.split("\n"), got.split("\n"), "cli.md", "kvlm " + args, n=0, lineterm=""))
        check(f"cli.md: '$ kvlm {args}' = the binary's output", rc == 0 and got == want,
              f"exit {rc}; " + " | ".join(diff[2:8]))
    rc, main = kvlm(build, "--help")
    listed = main.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0] if "\ncommands:\n" in main else ""
    commands = {line.split()[0] for line in listed.split("\n") if re.match(r"^  \w", line)}
    check(f"kvlm --help lists {len(commands)} commands", len(commands) >= 8, repr(listed[:200]))
    documented = {ticked(r[0])[0].split()[-1] for r in table("cli.md", text, ("command", "what it does", "its options"))
                  if ticked(r[0])}
    check("cli.md: the commands table = the commands of kvlm --help", documented == commands,
          set_diff(documented, commands))
    shown = set(helps.values())
    for c in sorted(commands):
        rc, out = kvlm(build, c, "--help")
        check(f"cli.md: 'kvlm {c} --help' is one of the blocks", rc == 0 and out.rstrip("\n") in shown,
              f"exit {rc}; add a '$ kvlm {c} --help' block")


# ---- http.md: the source's tables --------------------------------------------------------
def source_routes():
    """{(method, path)} of handle() in src/server/serve.c: each top-level
    `if (!strcmp(path, "..") ...)` block, GET when it refuses !get, POST when !post;
    a strncmp prefix is a path with an {id} after it."""
    src = read("src/server/serve.c")
    m = re.search(r"^static void handle\(void \*user.*?^\}", src, re.S | re.M)
    routes = set()
    for blk in re.split(r"\n    if \(", m.group(0) if m else "")[1:]:
        cond = blk.split("{", 1)[0]
        paths = re.findall(r'!strcmp\(path, "([^"]+)"\)', cond)
        paths += [p + "{id}" for p in re.findall(r'!strncmp\(path, "([^"]+)", \d+\)', cond)]
        method = "GET" if "if (!get) goto not_allowed" in blk else "POST" if "if (!post) goto not_allowed" in blk else "?"
        routes |= {(method, p) for p in paths}
    return routes


def source_fields():
    """{name: endpoints} of FIELDS in src/server/api_req.c."""
    src = read("src/server/api_req.c")
    eps = {"EP_BOTH": "both", "EP_CHAT": "chat", "EP_COMP": "completions"}
    return {n: eps[e] for n, e in re.findall(r'\{ "(\w+)", F_\w+, (EP_\w+) \}', src)}


def source_form_fields():
    src = read("src/server/api_audio.c")
    m = re.search(r"FIELD_NAMES\[F_COUNT\] = \{(.*?)\};", src, re.S)
    return set(re.findall(r'"([^"]+)"', m.group(1))) if m else set()


# ---- http.md: the live server ------------------------------------------------------------
def http(base, method, path, key=None, body=None):
    """(status, headers, body) of one request."""
    req = urllib.request.Request(base + path, data=body.encode() if body is not None else None, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def shape(v):
    """A JSON value's fields, recursively: objects by key, arrays by their first element."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return "null" if v is None else type(v).__name__.replace("int", "num").replace("float", "num")


def paths(sh, prefix=""):
    """The field paths of a shape: {"usage.prompt_tokens_details.cached_tokens", "choices[].index", ...}."""
    if isinstance(sh, dict):
        out = set()
        for k, x in sh.items():
            out |= {prefix + k} | paths(x, prefix + k + ".")
        return out
    if isinstance(sh, list) and sh:
        return paths(sh[0], prefix.rstrip(".") + "[].")
    return set()


def shape_diff(doc, live):
    """What tells a documented shape from the nearest live one."""
    if not live:
        return "no live answer of this kind"
    d = paths(doc)
    near = min(live, key=lambda sh: len(d ^ paths(sh)))
    n = paths(near)
    return (f"documented but not sent {sorted(d - n)}, sent but not documented {sorted(n - d)}" if d != n
            else f"the same fields, other JSON types: {json.dumps(doc)[:200]} vs {json.dumps(near)[:200]}")


def kind(v):
    return "error" if isinstance(v, dict) and "error" in v else v.get("object") if isinstance(v, dict) else None


def live_answers(base, key, model):
    """{kind: [shapes]} of live answers: one of every kind the page shows."""
    out = {}

    def add(obj):
        out.setdefault(kind(obj), []).append(shape(obj))

    def post(path, body):
        st, _, b = http(base, "POST", path, key, json.dumps(body))
        if body.get("stream"):
            for line in b.decode().split("\n"):
                if line.startswith("data: {"):
                    add(json.loads(line[6:]))
        else:
            add(json.loads(b))

    chat = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0}
    comp = {"model": model, "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}
    post("/v1/chat/completions", chat)
    post("/v1/chat/completions", dict(chat, stream=True, stream_options={"include_usage": True}))
    post("/v1/completions", comp)
    post("/v1/completions", dict(comp, stream=True))
    for path, k in (("/v1/models", key), ("/v1/models/" + model, key), ("/v1/kvlm/cache", key), ("/v1/models", None)):
        add(json.loads(http(base, "GET", path, k)[2]))
    return out


def documented_answers(text):
    """[(kind, shape, first characters)] of the JSON examples: ```json blocks and the
    "data: {...}" lines of other blocks."""
    out = []
    for lang, lines in md_blocks(text):
        docs = ["\n".join(lines)] if lang == "json" else [ln[6:] for ln in lines if ln.startswith("data: {")]
        for d in docs:
            try:
                v = json.loads(d)
            except ValueError as e:
                check(f"http.md: a JSON example parses ({d[:60]}...)", False, str(e))
                continue
            out.append((kind(v), shape(v), d[:70]))
    return out


def flat_keys(v, prefix=""):
    keys = set()
    for k, x in v.items():
        keys.add(prefix + k)
        if isinstance(x, dict):
            keys |= flat_keys(x, prefix + k + ".")
    return keys


def metrics_of(txt):
    """{name: (type, labels, help)} of a Prometheus text exposition."""
    fam, order = {}, []
    for line in txt.split("\n"):
        m = re.match(r"# (HELP|TYPE) (\S+) (.*)", line)
        if m:
            f = fam.setdefault(m.group(2), {"labels": set()})
            f[m.group(1)] = m.group(3)
            if m.group(2) not in order:
                order.append(m.group(2))
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? ", line)
        if not m:
            continue
        name = m.group(1)
        base = name if name in fam else re.sub(r"_(bucket|sum|count)$", "", name)
        if base in fam:
            fam[base]["labels"] |= set(re.findall(r'(\w+)="', m.group(2) or "")) - {"le"}
    return {n: (f.get("TYPE"), frozenset(f["labels"]), f.get("HELP")) for n, f in fam.items()}


def test_http(base, key):
    text = read("docs/http.md")
    rows = table("http.md", text, ("method", "path", "auth", "answer"))
    doc = {(r[0], ticked(r[1])[0]): r[2] for r in rows if ticked(r[1])}
    src = source_routes()
    check(f"http.md: the endpoint table = the {len(src)} routes of src/server/serve.c", set(doc) == src and len(src) >= 9,
          set_diff(set(doc), src))
    models = json.loads(http(base, "GET", "/v1/models", key)[2])["data"]
    model = models[0]["id"]
    for (method, path), auth in sorted(doc.items()):
        p = path.replace("{id}", model)
        other = "GET" if method == "POST" else "POST"
        body = "{}" if method == "POST" else None
        st0 = http(base, method, p, None, body)[0]
        st, _, b = http(base, method, p, key, body)
        st2, h2, _ = http(base, other, p, key, "{}" if other == "POST" else None)
        allow = h2.get("Allow", "")
        check(f"http.md: {method} {path} ({auth}) answers as documented",
              auth in ("key", "none") and (st0 == 401) == (auth == "key") and st not in (401, 405) and
              b"Unknown path" not in b and st2 == 405 and allow == ("GET, HEAD" if method == "GET" else "POST"),
              f"without the key {st0}, with it {st} {b[:80]!r}, {other} {st2} Allow {allow!r}")

    fields = {ticked(r[0])[0]: r[1] for r in table("http.md", text, ("field", "endpoints", "values")) if ticked(r[0])}
    sf = source_fields()
    check(f"http.md: the request fields = FIELDS of src/server/api_req.c ({len(sf)})", fields == sf and len(sf) > 20,
          set_diff(set(fields.items()), set(sf.items())))
    form = {ticked(r[0])[0] for r in table("http.md", text, ("form field", "values")) if ticked(r[0])}
    sff = source_form_fields()
    check(f"http.md: the form fields = FIELD_NAMES of src/server/api_audio.c ({len(sff)})", form == sff and sff,
          set_diff(form, sff))

    live = live_answers(base, key, model)
    documented = documented_answers(text)
    for k, sh, start in documented:
        check(f"http.md: the example {start}... has the fields of a live {k} answer", sh in live.get(k, []),
              shape_diff(sh, live.get(k, [])))
    kinds = {k for k, _, _ in documented}
    check(f"http.md: an example of every kind of answer ({', '.join(sorted(live))})", set(live) <= kinds,
          f"no example of {sorted(set(live) - kinds)}")

    cache = json.loads(http(base, "GET", "/v1/kvlm/cache", key)[2])
    doc_cache = {n for r in table("http.md", text, ("field", "meaning"), "GET /v1/kvlm/cache") for n in ticked(r[0])}
    check(f"http.md: the GET /v1/kvlm/cache table = its {len(cache)} fields", doc_cache == set(cache),
          set_diff(doc_cache, set(cache)))
    chat = json.loads(http(base, "POST", "/v1/chat/completions", key, json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}))[2])
    usage = flat_keys(chat["usage"]) - {"prompt_tokens_details"}
    doc_usage = {n for r in table("http.md", text, ("field", "meaning"), "POST /v1/chat/completions") for n in ticked(r[0])}
    check("http.md: the usage table = the fields of a live usage object", doc_usage == usage, set_diff(doc_usage, usage))

    st, _, b = http(base, "GET", "/metrics")
    live_m = metrics_of(b.decode())
    doc_m = {ticked(r[0])[0]: (r[1], frozenset(ticked(r[2])), r[3])
             for r in table("http.md", text, ("metric", "type", "labels", "help")) if ticked(r[0])}
    bad = sorted(n for n in set(doc_m) | set(live_m) if doc_m.get(n) != live_m.get(n))
    check(f"http.md: the metric table = GET /metrics ({len(live_m)} families: names, types, labels, help)",
          st == 200 and not bad and len(live_m) >= 20,
          "; ".join(f"{n}: docs {doc_m.get(n)} vs server {live_m.get(n)}" for n in bad[:4]))


# ---- c-api.md ----------------------------------------------------------------------------
def test_c_api(build):
    text = read("docs/c-api.md")
    hdr = read("include/kvlm.h")
    code = re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", hdr, flags=re.S))
    declared = set(re.findall(r"\b(kvlm_[a-z0-9_]+)\s*\(", code))
    documented = set()
    for sec, h, rows in md_tables(text):
        if h == ("function", "what it does"):
            documented |= {re.match(r"`(kvlm_\w+)", r[0]).group(1) for r in rows if re.match(r"`(kvlm_\w+)", r[0])}
    check(f"c-api.md: the function tables = the {len(declared)} functions of include/kvlm.h",
          documented == declared and len(declared) > 40, set_diff(documented, declared))
    lib = os.path.join(build, "libkvlm.a")
    nm = subprocess.run(["nm", "-g", "--defined-only", lib], capture_output=True, text=True)
    defined = {f[2] for f in (ln.split() for ln in nm.stdout.split("\n")) if len(f) == 3 and f[1] == "T"
               and f[2].startswith("kvlm_")}
    check(f"include/kvlm.h declares the kvlm_ functions {lib} defines (what libkvlm.so exports)",
          nm.returncode == 0 and defined == declared,
          f"declared, not defined {sorted(declared - defined)}; defined, not declared {sorted(defined - declared)}"
          if nm.returncode == 0 else nm.stderr)
    names = set(re.findall(r"\b(kvlm_\w+|KVLM_\w+)", text))
    idents = set(re.findall(r"\b\w+\b", hdr))
    check(f"c-api.md: its {len(names)} kvlm_/KVLM_ names are in include/kvlm.h", names <= idents,
          f"not in the header: {sorted(names - idents)}")
    progs = ["\n".join(lines) for lang, lines in md_blocks(text) if lang == "c" and "int main" in "\n".join(lines)]
    for prog in progs:
        cc = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(ROOT, "include"),
                             "-c", "-x", "c", "-", "-o", os.devnull], input=prog, capture_output=True, text=True)
        check("c-api.md: the example program compiles (cc -Wall -Wextra -Werror)", cc.returncode == 0, cc.stderr[:400])
    check("c-api.md: an example program", progs, "no ```c block with main()")


# ---- README and links ----------------------------------------------------------------------
def test_readme():
    text = read("README.md")
    lines = text.split("\n")
    first = "\n".join(lines[:24])
    para = []
    for line in lines[1:]:
        if line.strip():
            para.append(line)
        elif para:
            break
    check(f"README: the first screen (24 lines) has a title, a paragraph of {len(para)} lines, make run, "
          "make test and docs/chat.png",
          lines[0].startswith("# ") and 1 <= len(para) <= 3 and "make run" in first and "make test" in first
          and "](docs/chat.png)" in first, f"title {lines[0]!r}, paragraph {para}")
    png = os.path.join(ROOT, "docs", "chat.png")
    data = open(png, "rb").read() if os.path.exists(png) else b""
    ok = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24]) if ok else (0, 0)
    check(f"docs/chat.png: a PNG of {w}x{h}, {len(data)} bytes", ok and 1000 <= w <= 1600 and 560 <= h <= 900
          and len(data) < 200_000, "not a PNG of about 1280x720 under 200 KB (scripts/screenshot-webui.sh)")
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)(?:#[^)]*)?\)", text))
    pages = {"docs/" + f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")}
    check(f"README links every page of docs/ ({len(pages)})", pages <= linked, f"not linked: {sorted(pages - linked)}")


def test_links():
    files = ["README.md"] + sorted("docs/" + f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    anchors = {}

    def anchors_of(rel):
        if rel not in anchors:
            t = read(rel)
            anchors[rel] = {slug(m) for m in re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", t, flags=re.S), re.M)}
        return anchors[rel]

    for rel in files:
        text = re.sub(r"```.*?```", "", read(rel), flags=re.S)
        bad, n = [], 0
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue                      # http:, https:, mailto:
            n += 1
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(rel), path)) if path else rel
            if not os.path.exists(os.path.join(ROOT, dest)):
                if dest == os.path.join("docs", "python.md") and not os.path.isdir(os.path.join(ROOT, "python")):
                    print(f"# {rel}: {target} waits for the Python package (python/ is not in this tree)")
                    continue
                bad.append(f"{target} (no {dest})")
            elif anchor and dest.endswith(".md") and anchor not in anchors_of(dest):
                bad.append(f"{target} (no heading #{anchor} in {dest})")
        check(f"{rel}: its {n} relative links resolve", not bad, "; ".join(bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--url", required=True, help="a kvlm serve started with --api-key KEY and --cache-dir")
    ap.add_argument("--key", required=True)
    a = ap.parse_args()
    build = os.path.join(ROOT, a.build) if not os.path.isabs(a.build) else a.build
    for part in (lambda: test_cli(build), lambda: test_http(a.url, a.key), lambda: test_c_api(build),
                 test_readme, test_links):
        try:
            part()
        except Exception as e:   # a part that cannot run at all is a failure, not a crash
            check(f"a part ran through ({type(e).__name__})", False, str(e)[:300])
    n_ok = sum(results)
    print(f"{n_ok} passed, {len(results) - n_ok} failed")
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
