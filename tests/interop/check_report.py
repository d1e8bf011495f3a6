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
        self.by_id, self.rows, self.sections, self.ids = {}, {}, set(), set()
        self.tables = {}
        self.stack = []
        self.table = None
        self.cells = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "section" and "id" in a:
            self.sections.add(a["id"])
        if tag == "table" and "id" in a:
            self.table = a["id"]
            self.tables[self.table] = []
        if tag == "tr" and self.table:
            self.cells = []
        if tag == "td" and self.cells is not None:
            self.cells.append("")
        row = a.get("data-model") or a.get("data-chain")
        self.stack.append((tag, a.get("id"), a.get("data-k"), row))
        if row:
            self.current_row = row
            self.rows.setdefault(row, {})

    def handle_endtag(self, tag):
        if tag == "tr" and self.table and self.cells:
            self.tables[self.table].append(self.cells)
            self.cells = None
        if tag == "table":
            self.table = None
        while self.stack:
            t, *_ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if not data.strip():
            return
        if self.cells:
            self.cells[-1] += data.strip()
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
    for part in ("trusted", "models", "outages", "versions", "incidents", "sources", "schemes", "safeguards"):
        checked += 1
        if part not in dom.ids:
            mismatches.append(f"#{part} missing")
    # Top sources: uses per URI and their rights holders.
    uses = Counter(s["uri"] for r in rows for s in (r["output_sources"] or []))
    holders = {s["uri"]: s["rights_holder"] for r in rows for s in (r["output_sources"] or [])}
    for cells in dom.tables.get("sources", []):
        uri, holder, _lic, n = cells
        checked += 1
        if uses.get(uri) != int(n) or holders.get(uri) != holder:
            mismatches.append(f"source {uri}: page says {n} uses by {holder!r}, archive says {uses.get(uri)} by {holders.get(uri)!r}")
    # Safeguard decisions per policy and action.
    decisions = Counter((s["policy_id"], s["action"]) for r in rows for s in (r["safeguards"] or []))
    for cells in dom.tables.get("safeguards", []):
        pol, act, n = cells
        checked += 1
        if decisions.get((pol, act)) != int(n):
            mismatches.append(f"safeguard {pol}/{act}: page says {n}, archive says {decisions.get((pol, act))}")
    # Incidents listed are the failed and aborted records.
    failed = {r["record_id"] for r in rows if r["outcome"] != "completed"}
    for cells in dom.tables.get("incidents", []):
        checked += 1
        if cells[0] not in failed:
            mismatches.append(f"incident {cells[0]} is not a failed or aborted record")
    print(json.dumps({"checked": checked, "mismatches": mismatches, "trusted": dom.by_id.get("trusted")}))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
