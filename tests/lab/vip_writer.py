"""A write load through a floating address, for tests/lab/test_lab_floating.py.

Run inside a lab host's network namespace (`ip netns exec <host> python vip_writer.py ...`), so
its traffic stays in the lab. Reads the 'openexchange' password on stdin (never argv). Inserts
one row per commit into floattest.w with ids 1, 2, 3 ... (a failed insert's id is never used
again: it may have committed without its acknowledgement arriving, and a second row with its id
would break replication when the old master returns). Prints one line per event, flushed:

    ack <id> <monotonic seconds>     the commit was acknowledged
    err <id> <monotonic seconds>     the insert or the connection failed

and stops after `seconds`, or when stdin's second line says "stop" (it never does here).
"""

from __future__ import annotations

import sys
import time

import pymysql


def main() -> None:
    host, seconds, pause = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    password = sys.stdin.readline().rstrip("\n")
    end = time.monotonic() + seconds
    conn = None
    next_id = 1
    while time.monotonic() < end:
        row = next_id
        next_id += 1
        try:
            if conn is None:
                conn = pymysql.connect(host=host, user="openexchange", password=password, connect_timeout=1,
                                       read_timeout=2, write_timeout=2, autocommit=True)
            with conn.cursor() as cur:
                cur.execute("INSERT INTO floattest.w (id, at) VALUES (%s, %s)", (row, time.time()))
            print(f"ack {row} {time.monotonic():.3f}", flush=True)
        except Exception:  # any failure: count it, reconnect (the address may have moved)
            print(f"err {row} {time.monotonic():.3f}", flush=True)
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
            conn = None
            time.sleep(0.05)
        time.sleep(pause)


if __name__ == "__main__":
    main()
