#!/usr/bin/env python3
"""results/speed.json: the speed figures the benches measure, one entry per name, each
{"name", "ours", "peer", "peer_value", "unit", "speedup", "command"}; `speedup` is how many times
faster we are than the peer (> 1: faster; for shares, ours / peer). A bench calls record();
`python3 benches/speed_json.py table` prints the README's *Speed and size* rows made from it.
"""
import json
import os
import sys

PATH = os.path.join(os.path.dirname(__file__), "..", "results", "speed.json")


def record(entries, path=PATH):
    """Adds or replaces entries (by name), keeping the others; writes the file sorted by name."""
    try:
        with open(path) as f:
            old = json.load(f)
    except FileNotFoundError:
        old = []
    by_name = {e["name"]: e for e in old}
    for e in entries:
        missing = {"name", "ours", "peer", "peer_value", "unit", "speedup", "command"} - set(e)
        if missing:
            raise ValueError(f"speed entry {e.get('name')} lacks {sorted(missing)}")
        by_name[e["name"]] = e
    with open(path, "w") as f:
        json.dump(sorted(by_name.values(), key=lambda e: e["name"]), f, indent=1)
        f.write("\n")


def timing(name, ours, peer, peer_value, command, note=""):
    """A time (seconds) against a peer's time: speedup = peer / ours."""
    return {"name": name, "ours": ours, "peer": peer, "peer_value": peer_value, "unit": "s",
            "speedup": peer_value / ours, "command": command, "note": note}


def table(path=PATH):
    with open(path) as f:
        entries = json.load(f)
    lines = ["| name | ours | peer | speed-up (× peer) | machine and command |", "| --- | --- | --- | --- | --- |"]
    for e in entries:
        fmt = (lambda v: f"{v:.4g} {e['unit']}")
        lines.append(f"| `{e['name']}` | {fmt(e['ours'])} | {e['peer']}: {fmt(e['peer_value'])} | {e['speedup']:.2f} | "
                     f"{e.get('note', '')} `{e['command']}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["table"]:
        print(table())
    else:
        sys.exit("usage: speed_json.py table")
