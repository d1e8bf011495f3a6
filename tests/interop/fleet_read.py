"""Read a kiroku archive from an S3-compatible endpoint with the engines auditors use.

usage: fleet_read.py duckdb|spark ENDPOINT BUCKET PREFIX

duckdb: DuckDB's httpfs extension (from PyPI, no download at run time) reads
        s3://BUCKET/PREFIX/records/*/*.parquet directly, with Hive partitions.
spark:  the Parquet files are fetched with boto3 into a temporary directory and read
        by Apache Spark in local mode (reading s3a:// would need Hadoop's AWS jars
        from Maven, which the test machines cannot reach).

Prints JSON: {"rows": N, "distinct_record_ids": N, "by_model": {model: n}, "dates": [...]}.
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""
import json
import os
import pathlib
import sys
import tempfile

engine, endpoint, bucket, prefix = sys.argv[1:5]
key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]


def duckdb_counts():
    import duckdb
    import duckdb_extension_httpfs

    con = duckdb.connect()
    version = con.sql("PRAGMA version").fetchone()[0]
    ext = pathlib.Path(duckdb_extension_httpfs.__file__).parent / "extensions" / version / "httpfs.duckdb_extension"
    con.sql(f"INSTALL '{ext}'")
    con.sql("LOAD httpfs")
    host = endpoint.split("://", 1)[1]
    con.sql(
        f"CREATE SECRET (TYPE s3, KEY_ID '{key}', SECRET '{secret}', REGION 'us-east-1', "
        f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL {'true' if endpoint.startswith('https') else 'false'})"
    )
    src = f"read_parquet('s3://{bucket}/{prefix}/records/*/*.parquet', hive_partitioning=true)"
    rows, ids = con.sql(f"SELECT count(*), count(DISTINCT record_id) FROM {src}").fetchone()
    by_model = dict(con.sql(f"SELECT model, count(*) FROM {src} GROUP BY model").fetchall())
    dates = [str(d) for (d,) in con.sql(f"SELECT DISTINCT date FROM {src} ORDER BY 1").fetchall()]
    return rows, ids, by_model, dates


def spark_counts():
    import boto3
    from pyspark.sql import SparkSession

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                      region_name="us-east-1")
    local = tempfile.mkdtemp(prefix="kiroku-spark-")
    token = None
    while True:
        kw = {"Bucket": bucket, "Prefix": f"{prefix}/records/"}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        for obj in page.get("Contents", []):
            path = pathlib.Path(local) / obj["Key"][len(prefix) + 1:]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    spark = (SparkSession.builder.master("local[1]").appName("kiroku-interop")
             .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(str(pathlib.Path(local) / "records"))
    rows = df.count()
    ids = df.select("record_id").distinct().count()
    by_model = {r["model"]: r["count"] for r in df.groupBy("model").count().collect()}
    dates = sorted(str(r["date"]) for r in df.select("date").distinct().collect())
    spark.stop()
    return rows, ids, by_model, dates


rows, ids, by_model, dates = duckdb_counts() if engine == "duckdb" else spark_counts()
print(json.dumps({"rows": rows, "distinct_record_ids": ids, "by_model": by_model, "dates": dates}))
