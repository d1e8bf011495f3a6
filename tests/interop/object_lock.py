"""Inspect S3 Object Lock on a kiroku archive with boto3, an independent S3 client.

usage: object_lock.py ENDPOINT BUCKET PREFIX REMOVED_PREFIX

Prints JSON:
  {"files": {key: {"mode": ..., "until": "..."}},   every current object under PREFIX/records/
   "manifest_mode": ... or null,                       the manifest's lock (none expected)
   "removed_current": n,                               current objects under REMOVED_PREFIX
   "removed_versions": n,                              object versions kept under REMOVED_PREFIX
   "delete_version_error": "AccessDenied" or null}     deleting one of them by version id
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""
import json
import sys

import boto3
from botocore.exceptions import ClientError

endpoint, bucket, prefix, removed = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def lock_of(key):
    head = s3.head_object(Bucket=bucket, Key=key)
    until = head.get("ObjectLockRetainUntilDate")
    return {"mode": head.get("ObjectLockMode"), "until": until.isoformat() if until else None}


listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/records/").get("Contents", [])
files = {o["Key"]: lock_of(o["Key"]) for o in listed}
manifest_mode = lock_of(f"{prefix}/_kiroku/manifest.json")["mode"]
current = s3.list_objects_v2(Bucket=bucket, Prefix=removed).get("Contents", [])
versions = s3.list_object_versions(Bucket=bucket, Prefix=removed).get("Versions", [])
error = None
if versions:
    try:
        s3.delete_object(Bucket=bucket, Key=versions[0]["Key"], VersionId=versions[0]["VersionId"])
    except ClientError as e:
        error = e.response["Error"]["Code"]
print(json.dumps({
    "files": files,
    "manifest_mode": manifest_mode,
    "removed_current": len(current),
    "removed_versions": len(versions),
    "delete_version_error": error,
}))
