#!/usr/bin/env python3
"""Read a kiroku archive with DuckDB and with pyarrow, independently, and print the
figures the Rust interop test compares with kiroku's own: row counts, rows per model,
the Hive partition column, the Parquet schema, and whether each row's typed columns
hold what its payload (the hashed bytes, read with Python's own JSON parser) says.

    read_archive.py ARCHIVE_DIR
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds


def main() -> int:
    archive = sys.argv[1]
    glob = f"{archive}/records/*/*.parquet"
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()[0]
    by_model = dict(con.execute(f"SELECT coalesce(model, '-'), count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY 1").fetchall())
    dates = [r[0] for r in con.execute(f"SELECT DISTINCT CAST(date AS VARCHAR) FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY 1").fetchall()]
    outcomes = dict(con.execute(f"SELECT outcome, count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY 1").fetchall())
    sources = con.execute(f"SELECT count(*) FROM read_parquet('{glob}') WHERE len(output_sources) > 0").fetchone()[0]
    ts_type = con.execute(f"SELECT typeof(started_at) FROM read_parquet('{glob}') LIMIT 1").fetchone()[0]

    dataset = ds.dataset(f"{archive}/records", format="parquet", partitioning="hive")
    table = dataset.to_table()
    pa_by_model = {}
    for m in table.column("model").to_pylist():
        pa_by_model[m or "-"] = pa_by_model.get(m or "-", 0) + 1
    # Python's float parsing is correctly rounded: a column one ULP off shows here.
    mismatches = []
    for row in table.select(["record_id", "seq", "trace_id", "temperature", "payload"]).to_pylist():
        p = json.loads(row.pop("payload"))
        want = {
            "record_id": p["record_id"],
            "seq": p["seq"],
            "trace_id": p.get("trace", {}).get("trace_id"),
            "temperature": p["gen_ai"]["request"].get("temperature"),
        }
        got = row
        if want != got:
            mismatches.append({"payload": want, "columns": got})
    temperatures = sorted(t for t in table.column("temperature").to_pylist() if t is not None)
    print(json.dumps({
        "duckdb": {"rows": rows, "by_model": by_model, "dates": dates, "outcomes": outcomes, "with_sources": sources, "started_at_type": ts_type},
        "pyarrow": {"rows": table.num_rows, "by_model": pa_by_model, "schema": [f"{f.name}: {f.type}" for f in dataset.schema],
                    "payload_mismatches": mismatches[:5], "temperatures": [repr(t) for t in temperatures]},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
