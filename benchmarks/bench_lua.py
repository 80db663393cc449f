"""Redis' own time per call: ledger scripts per one-call run and microseconds of Lua per script, from Redis'
``INFO commandstats`` (the server's count, not the client's), with the spend history on and off, against a raw
``INCRBY`` script measured the same way. Run it against a Redis no other client is scripting at the same time.

Run: ``.venv/bin/python benchmarks/bench_lua.py [--redis URL] [--calls N]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import uuid

import redis
import structlog

from guardian import Guardian, Policy
from guardian.store import RedisStore
from guardian.testing import ScriptedChatModel

BUDGETS = [
    {"name": "run-cap", "scope": "run", "limits": {"cost_usd": 1000, "llm_calls": 10_000_000}},
    {"name": "user-daily", "scope": "user", "window": "day", "limits": {"cost_usd": 1_000_000}},
    {"name": "tenant-monthly", "scope": "tenant", "window": "month", "limits": {"cost_usd": 10_000_000}},
]


def script_stats(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=os.environ.get("GUARDIAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    client = redis.Redis.from_url(args.redis)
    prefix = f"guardian-bench-lua-{uuid.uuid4().hex[:8]}:"
    try:
        for history in (True, False):
            policy = Policy.from_dict({"version": 1, "loops": [], "budgets": BUDGETS, "settings": {"history": history}})
            with Guardian(policy, store=RedisStore.from_url(args.redis), key_prefix=prefix) as guard:
                handler = guard.callback(agent="bench", user="u", tenant="t")
                model = ScriptedChatModel(replies=["ok"], cycle=True, max_tokens=64)
                for _ in range(200):  # warm: the script loaded, the buckets made
                    model.invoke("hi", config={"callbacks": [handler]})
                guard.flush()
                calls0, usec0 = script_stats(client)
                for _ in range(args.calls):
                    model.invoke("hi", config={"callbacks": [handler]})
                guard.flush()
                calls1, usec1 = script_stats(client)
            scripts, usec = calls1 - calls0, usec1 - usec0
            print(
                f"history {'on ' if history else 'off'}: {scripts / args.calls:.2f} scripts per one-call run, "
                f"{usec / scripts:.1f} us of Lua per script, {usec / args.calls:.1f} us of Lua per call"
            )
        raw = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        raw(keys=[prefix + "raw"], args=[1])
        calls0, usec0 = script_stats(client)
        for _ in range(args.calls):
            raw(keys=[prefix + "raw"], args=[1])
        calls1, usec1 = script_stats(client)
        print(f"raw INCRBY script: {(usec1 - usec0) / (calls1 - calls0):.1f} us of Lua per call")
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):  # our own prefix only
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
