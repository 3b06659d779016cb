"""Side-by-side adapters for `benchmarks/compare.py`, adapted from the shared peerbench harness.

An adapter is a module `<name>_peer.py` read by `client.py` and `worker.py`. It takes its
database from `$PB_DATABASE_URL` (a fresh one per measure) and defines:

- `NAME`, `BACKEND` ("postgres" or "sqlite"), `CONFIG` (how it is set up, for the report),
  `BULK_API` (the bulk enqueue call, or None);
- `async setup()` (install the schema), `async open()`, `async enqueue(t)`,
  `async bulk(ts)` (if `BULK_API`), `async close()`: the producer side;
- `worker_main()`: run one worker process whose no-op task calls `hits.hit(t)` first.

huey is synchronous; its `async` wrappers only call it, which costs well under a
microsecond next to a commit.
"""
