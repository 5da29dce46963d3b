"""The store-and-forward queue: order, priority, acks, kill -9, the disk quota."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from edufleet_agent.queue import EVENT, TELEMETRY, MemoryOutbox, Queue


def sample(seq: int) -> bytes:
    return json.dumps(
        {"sid": "s1234567", "seq": seq, "ts": "2026-12-03T00:00:00Z", "metrics": {}}
    ).encode()


def event(seq: int) -> bytes:
    return json.dumps({"seq": seq, "kind": "fault"}).encode()


def test_events_go_before_telemetry_and_each_replays_in_order(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.sqlite3", quota_bytes=10**7, sid="s1234567", batch=2)
    queue.put([(TELEMETRY, "t", sample), (TELEMETRY, "t", sample)])
    queue.put([(EVENT, "e", event), (TELEMETRY, "t", sample), (EVENT, "e", event)])
    taken = queue.take(10)
    assert [item.topic for item in taken] == ["e", "e", "t", "t"]
    assert [json.loads(item.payload)["seq"] for item in taken[:2]] == [3, 5]
    batches = [json.loads(item.payload)["samples"] for item in taken[2:]]
    assert [[s["seq"] for s in batch] for batch in batches] == [[1, 2], [4]]
    assert queue.take(10) == []  # nothing handed out twice


def test_only_acknowledged_items_leave_and_the_rest_replay(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    queue = Queue(path, quota_bytes=10**7, sid="s1234567")
    queue.put([(EVENT, "e", event) for _ in range(3)])
    first, second, _third = queue.take(3)
    queue.ack(second)
    queue.close()

    reopened = Queue(path, quota_bytes=10**7, sid="s1234567")
    replay = reopened.take(10)
    assert [json.loads(i.payload)["seq"] for i in replay] == [1, 3]
    reopened.ack(first)
    reopened.rewind()
    assert [json.loads(i.payload)["seq"] for i in reopened.take(10)] == [3]


def test_sequence_numbers_keep_increasing_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    queue = Queue(path, quota_bytes=10**7, sid="s1234567")
    assert queue.put([(EVENT, "e", event), (EVENT, "e", event)]) == [1, 2]
    queue.close()
    again = Queue(path, quota_bytes=10**7, sid="s1234567")
    assert again.put([(EVENT, "e", event)]) == [3]
    other = Queue(tmp_path / "q.sqlite3", quota_bytes=10**7, sid="s7654321")
    assert other.put([(EVENT, "e", event)]) == [1]


def test_writes_survive_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from edufleet_agent.queue import EVENT, Queue
        from pathlib import Path
        queue = Queue(Path({str(path)!r}), quota_bytes=10**7, sid="s1234567")
        for n in range(50):
            queue.put([(EVENT, "e", lambda seq: str(seq).encode())])
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "written" in done.stdout
    queue = Queue(path, quota_bytes=10**7, sid="s1234567")
    assert [int(i.payload) for i in queue.take(100)] == list(range(1, 51))


def test_quota_thins_old_telemetry_and_never_drops_events(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    quota = 64 * 1024
    queue = Queue(path, quota_bytes=quota, sid="s1234567", batch=500)
    padding = b"x" * 400

    def fat_sample(seq: int) -> bytes:
        return sample(seq)[:-1] + b',"pad":"' + padding + b'"}'

    for round_ in range(400):
        items = [(TELEMETRY, "t", fat_sample)]
        if round_ % 40 == 0:
            items.append((EVENT, "e", event))
        queue.put(items)  # type: ignore[arg-type]

    assert queue.used_bytes <= quota
    files = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert files <= quota * 3 + 512 * 1024  # the database, its WAL and index pages
    depth = queue.depth()
    assert depth["events"] == 10
    kept = [
        s["seq"]
        for item in queue.take(1000)
        if item.topic == "t"
        for s in json.loads(item.payload)["samples"]
    ]
    assert kept == sorted(kept)
    assert kept[-1] == 410  # the newest sample is never the one thinned
    gaps = {b - a for a, b in itertools.pairwise(kept)}
    assert max(gaps) > 1  # old samples were thinned, not cut off in one block
    assert len(kept) < 400


def test_memory_outbox_rewinds_unacknowledged_items_in_order() -> None:
    outbox = MemoryOutbox()
    for n in range(4):
        outbox.put("t", str(n).encode())
    first = outbox.take(3)
    outbox.ack(first[1])
    outbox.rewind()
    assert [i.payload for i in outbox.take(10)] == [b"0", b"2", b"3"]


def test_queue_file_is_usable_after_reopen_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    Queue(path, quota_bytes=10**7, sid="s1234567").put([(EVENT, "e", event)])
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edufleet_agent.queue import Queue; from pathlib import Path;"
            f"q = Queue(Path({str(path)!r}), quota_bytes=10**7, sid='s1234567');"
            "print(q.depth()['events'])",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    assert out.stdout.strip() == "1"
