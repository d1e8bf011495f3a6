#!/usr/bin/env python3
"""Check a `kiroku report` page, as rendered by headless Chromium (its DOM), against
figures computed independently from the archive with pyarrow.

    check_report.py ARCHIVE_DIR DOM_HTML

Prints a JSON object: {"checked": N, "mismatches": [...]}; exit 1 on any mismatch.
"""
import json
import sys
from collections import Counter
from html.parser import HTMLParser

import pyarrow.compute as pc
import pyarrow.dataset as ds


class Dom(HTMLParser):
    """Collects text by element id, rows by data-model / data-chain, section ids."""

    def __init__(self):
        super().__init__()
        self.by_id, self.rows, self.sections = {}, {}, set()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "id" in a:
            self.sections.add(a["id"])
        row = a.get("data-model") or a.get("data-chain")
        self.stack.append((tag, a.get("id"), a.get("data-k"), row))
        if row:
            self.current_row = row
            self.rows.setdefault(row, {})

    def handle_endtag(self, tag):
        while self.stack:
            t, *_ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if not data.strip():
            return
        for _, eid, key, _ in reversed(self.stack):
            if eid:
                self.by_id[eid] = self.by_id.get(eid, "") + data.strip()
                break
        for _, _, key, _ in reversed(self.stack):
            if key and getattr(self, "current_row", None):
                self.rows[self.current_row][key] = data.strip()
                break


def main() -> int:
    archive, dom_path = sys.argv[1], sys.argv[2]
    dom = Dom()
    dom.feed(open(dom_path, encoding="utf-8").read())
    t = ds.dataset(f"{archive}/records", format="parquet", partitioning="hive").to_table()
    rows = t.to_pylist()
    expect = {
        "total-records": len(rows),
        "aborted-streams": sum(1 for r in rows if r["outcome"] == "aborted" and r["streaming"]),
        "fallbacks": sum(1 for r in rows if r["request_model"] and r["response_model"] and r["request_model"] != r["response_model"]),
        "with-sources": sum(1 for r in rows if r["output_sources"]),
        "watermarked": sum(1 for r in rows if r["watermarks"]),
    }
    mismatches, checked = [], 0
    for k, v in expect.items():
        checked += 1
        if dom.by_id.get(k) != str(v):
            mismatches.append(f"#{k}: page says {dom.by_id.get(k)!r}, archive says {v}")
    per_model = Counter((r["model"] or "-") for r in rows)
    errors = Counter((r["model"] or "-") for r in rows if r["outcome"] == "error")
    aborted = Counter((r["model"] or "-") for r in rows if r["outcome"] == "aborted")
    for m, n in per_model.items():
        got = dom.rows.get(m, {})
        for key, want in (("requests", n), ("errors", errors[m]), ("aborted", aborted[m])):
            checked += 1
            if got.get(key) != str(want):
                mismatches.append(f"model {m} {key}: page says {got.get(key)!r}, archive says {want}")
    for chain, n in Counter(r["chain_id"] for r in rows).items():
        checked += 1
        if dom.rows.get(chain, {}).get("records") != str(n):
            mismatches.append(f"chain {chain}: page says {dom.rows.get(chain)}, archive says {n}")
    for section in ("integrity", "continuity", "explainability"):
        checked += 1
        if section not in dom.sections:
            mismatches.append(f"section {section} missing")
    print(json.dumps({"checked": checked, "mismatches": mismatches, "trusted": dom.by_id.get("trusted")}))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
