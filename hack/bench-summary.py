#!/usr/bin/env python3
"""Rewrites the summary table at the top of BENCHMARKS.md (<!-- summary:begin --> .. <!-- summary:end -->) from the
sections the benchmarks wrote: each figure is copied, with the section (and so the command and the run) it comes from.
hack/bench-all.sh runs every benchmark and then this. A figure whose section is missing shows as "not measured".
"""
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "hack"))
import benchlib  # noqa: E402

PATH = os.path.join(REPO, "BENCHMARKS.md")
TEXT = open(PATH).read()


def section(name):
    m = re.search(rf"<!-- {re.escape(name)}:begin -->(.*?)<!-- {re.escape(name)}:end -->", TEXT, re.S)
    return m.group(1) if m else ""


def rows(text):
    """The rows of the markdown tables in `text`, as lists of stripped cells."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not re.match(r"^\|[-:| ]+\|$", line.strip())]


def first(pattern, text, default="not measured"):
    m = re.search(pattern, text, re.S)
    return m.group(1) if m else default


def num(s):
    return float(re.sub(r"[^0-9.]", "", s)) if s and re.search(r"[0-9]", s) else None


def verdict(value, target, below=True):
    if value is None:
        return "—"
    return "met" if (value < target if below else value >= target) else "not met"


def main():
    out = []
    load = section("load")
    ratio = lambda conns: first(rf"webhook \({conns} conns\): req/s ([0-9.]+)×", load)  # noqa: E731
    r8, r32 = ratio(8), ratio(32)
    # The floor that also reads the review with serde_json, in the same rounds: the least any webhook that reads
    # the request pays.
    reading = [first(rf"{conns} conns: floor \+ serde_json / floor ([0-9.]+)×", load, None) for conns in (8, 32)]
    reads = f" (a floor that only reads the review: {reading[0]}× / {reading[1]}×)" if all(reading) else ""
    out.append(("`/validate` req/s vs. the axum+rustls floor, in process, 8 / 32 connections (`load`)",
                f"{r8}× / {r32}×{reads}", "≥ 0.8×",
                verdict(min(filter(None, [num(r8), num(r32)]), default=None), 0.8, False)))
    floor_p99 = first(r"webhook \(32 conns\):[^;]*?vs\. floor ([0-9]+) µs", load, None)
    p99 = first(r"webhook \(32 conns\):[^;]*?p99 ([0-9]+) µs", load)
    # A closed loop of 32 connections waits 32 / (req/s) on average: the floor's own p99 is the bound to read it by.
    floor99 = f" (floor {floor_p99} µs, medians of the same rounds)" if floor_p99 else ""
    out.append(("p99 at 32 connections, in process (`load`)", f"{p99} µs{floor99}", "< 1 ms", verdict(num(p99), 1000)))

    external = section("external")
    # The medians table: tool, protocol, load, floor req/s, webhook req/s, **webhook / floor**, ...
    ext = [r[5].strip("*×") for r in rows(external) if r[0] in ("wrk", "h2load") and r[5].startswith("**")]
    out.append(("the same with external load generators, wrk and h2load (`external`)",
                " / ".join(f"{e}×" for e in ext) or "not measured", "≥ 0.7×",
                verdict(min((float(e) for e in ext), default=None), 0.7, False)))

    decision = section("decision")
    judge = {r[0].replace(",", ""): r[1].split(" (")[0] for r in rows(decision) if r and r[0].replace(",", "").isdigit()}
    js = [judge.get(n, "not measured") for n in ("100", "100000", "1000000")]
    worst = max((num(j) for j in js if num(j) is not None), default=None)
    out.append(("one `judge` at 100 / 100 000 / 1 000 000 Backups (`decision`)", " / ".join(js), "< 1 µs, flat",
                verdict(worst, 1.0)))
    # The same decision once the Restore is read (the `decide` column, when the section has one).
    decide = {r[0].replace(",", ""): r[3].split(" (")[0] for r in rows(decision)
              if len(r) >= 10 and r[0].replace(",", "").isdigit()}
    ds = [decide.get(n, "not measured") for n in ("100", "100000", "1000000")]
    worst = max((num(d) for d in ds if num(d) is not None), default=None)
    out.append(("the same decision with the Restore already read, as `/validate` makes it (`decide`: `judge_head`)",
                " / ".join(ds), "< 1 µs, flat", verdict(worst, 1.0)))
    build = next((r[-1] for r in rows(decision) if r and r[0].replace(",", "") == "1000000"), "not measured")
    out.append(("index build, 1 000 000 Backups (`decision`)", build, "reported", "—"))

    memory = section("memory")
    for fmt in ("YAML", "JSON"):
        r = next((r for r in rows(memory) if r[:2] == ["100,000", fmt]), None)
        mb = lambda mib: num(mib) * 1.048576  # noqa: E731
        met = "—" if not r else "met" if mb(r[4]) < 60 and mb(r[5]) < 200 else "not met"
        out.append((f"`serve --inventory`, 100 000 Backups, {fmt} List: resident after load / peak (`memory`)",
                    f"{r[4]} / {r[5]} MiB" if r else "not measured", "< 60 MB / < 200 MB", met))
    ready10k = {r[1]: r[3] for r in rows(memory) if r and r[0] == "10,000"}

    live = section("live")
    per = first(r"that is (\d+) bytes of resident memory per Backup", live)
    per100k = first(r"that is (\d+) bytes of resident memory per Backup", section("live-100000"), "")
    at100k = f" (100 000 Backups: {per100k} B, `live-100000`)" if per100k else ""
    out.append(("live mode: resident bytes per cached Backup, 10 000 Backups (`live`)", f"{per} B{at100k}", "< 500 B",
                verdict(num(per), 500)))
    live_ready = first(r"ready in ([0-9.]+) s", live)
    live_list = first(r"not decoded, in ([0-9.]+) s", live, "")
    live_floor = f" (the API server's paged list alone: {live_list} s)" if live_list else ""
    out.append(("time to `/readyz` with 10 000 Backups, file (YAML / JSON) / live (`memory`, `live`)",
                f"{ready10k.get('YAML', '?')} / {ready10k.get('JSON', '?')} / {live_ready} s{live_floor}", "< 1 s",
                verdict(max(filter(None, [num(ready10k.get("YAML")), num(ready10k.get("JSON")), num(live_ready)]),
                            default=None), 1.0)))
    live100k = section("live-100000")
    ready100k = first(r"ready in ([0-9.]+) s", live100k)
    list100k = first(r"not decoded, in ([0-9.]+) s", live100k, "")
    floor100k = f" (the API server's paged list alone: {list100k} s)" if list100k else ""
    out.append(("time to `/readyz` with 100 000 Backups, live (`live-100000`)",
                f"{ready100k} s{floor100k}" if num(ready100k) is not None else ready100k, "< 10 s",
                verdict(num(ready100k), 10.0)))

    dry = section("dry-run")
    added = first(r"\| allowed[^\n]*\*\*with − without\*\* \|[^|]*\|[^|]*\|[^|]*\|[^|]*\| \*\*\+?([0-9.]+)\*\*", dry)
    out.append(("`kubectl apply --dry-run=server`, what the webhooks add at the median (`dry-run`)", f"+{added} ms",
                "< 5 ms", verdict(num(added), 5.0)))

    lines = ["<!-- summary:begin -->", "## Summary: the performance targets", "",
             "Command: `hack/bench-all.sh` (runs every benchmark below, each against its floor or baseline in the same "
             "run, then `hack/bench-summary.py` copies the figures here). Each row names the section it comes from; "
             "the sections say when, on which commit and how.", "",
             "| measure | measured | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in out]
    lines.append("<!-- summary:end -->")
    summary = "\n".join(lines)
    if "<!-- summary:begin -->" not in TEXT:
        # First time: right under the title and introduction, above the sections.
        head, sep, rest = TEXT.partition("\n<!-- ")
        open(PATH, "w").write(head.rstrip("\n") + "\n\n" + summary + "\n" + sep + rest)
    else:
        benchlib.write_section("summary", summary, PATH)
    print(summary)


if __name__ == "__main__":
    main()
