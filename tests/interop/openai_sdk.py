#!/usr/bin/env python3
"""Drive the official openai SDK against `kiroku proxy` and against the upstream
directly, and report what the SDK saw, for the Rust interop test to compare with the
audit records.

    openai_sdk.py PROXY_URL DIRECT_URL DOWN_PROXY_URL
"""
import json
import sys

import blake3
import openai

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about audit logs and provenance."}]


def client(base: str) -> openai.OpenAI:
    # The key is a secret the proxy passes upstream and never records.
    return openai.OpenAI(base_url=f"{base}/v1", api_key="sk-test-interop-SECRET-0123456789", max_retries=0, timeout=30)


def plain(base: str):
    raw = client(base).chat.completions.with_raw_response.create(model="sample-1", messages=MESSAGES, temperature=0.3)
    body = raw.http_response.content
    completion = raw.parse()
    text = completion.choices[0].message.content
    return {"blake3": blake3.blake3(body).hexdigest(), "text_blake3": blake3.blake3(text.encode()).hexdigest(), "object": completion.model_dump()}


def stream_raw(base: str):
    with client(base).chat.completions.with_streaming_response.create(
        model="sample-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as resp:
        body = b"".join(resp.iter_bytes())
    return {"blake3": blake3.blake3(body).hexdigest(), "bytes": len(body)}


def stream_events(base: str):
    chunks = list(client(base).chat.completions.create(model="sample-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return {"events": [c.model_dump() for c in chunks], "text_blake3": blake3.blake3(text.encode()).hexdigest()}


def early_close(base: str):
    stream = client(base).chat.completions.create(
        model="sample-1", messages=[{"role": "user", "content": " ".join(["word"] * 60)}], stream=True, extra_body={"sample_delay_ms": 20}
    )
    got = 0
    for _ in stream:
        got += 1
        if got == 2:
            break
    stream.close()
    return {"chunks_read": got}


def down(base: str):
    try:
        client(base).chat.completions.create(model="sample-1", messages=MESSAGES)
    except openai.APIStatusError as e:
        return {"status": e.status_code, "message": str(e)}
    return {"status": 200}


def main() -> int:
    proxy, direct, down_proxy = sys.argv[1:4]
    out = {
        "proxy": {"plain": plain(proxy), "stream_raw": stream_raw(proxy), "stream": stream_events(proxy), "early_close": early_close(proxy)},
        "direct": {"plain": plain(direct), "stream_raw": stream_raw(direct), "stream": stream_events(direct)},
        "down": down(down_proxy),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
