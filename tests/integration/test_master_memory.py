"""test_master_memory.py - the master caps its malloc arenas (MALLOC_ARENA_MAX).

glibc gives each new thread that allocates an arena of its own, up to 8
per CPU, and each arena keeps what is freed into it for its own reuse: on
the 2-CPU bench machine the master's 16 arenas held 25 MiB free at the
end of make bench (docs/PERFORMANCE.md, "Master memory"). The master caps
them at one per CPU (at least 2) unless MALLOC_ARENA_MAX says otherwise.

An arena other than the main one lives in a heap that glibc reserves as
64 MiB of address space aligned to 64 MiB, of which the part not in use
is mapped PROT_NONE: each such heap shows in /proc/PID/maps as a '---p'
mapping without a file that ends on a 64 MiB boundary. The tests count
those after the master's threads have all served requests.
"""

import os
import threading

import pytest

import echofs_harness as h

HEAP_RESERVE = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit
THREADS = 16
ROUNDS = 25


def arena_heaps(pid: int) -> int:
    """The glibc arena heaps of process @pid (arenas other than the main one)."""
    count = 0
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            inode, path = fields[4], fields[5] if len(fields) > 5 else ""
            if fields[1] == "---p" and inode == "0" and not path and \
                    end % HEAP_RESERVE == 0 and end - start < HEAP_RESERVE:
                count += 1
    return count


def busy(master) -> None:
    """THREADS clients at once, each uploading and downloading ROUNDS 4 KiB
    files: every connection thread of the master allocates."""
    errors = []

    def client(n):
        try:
            c = master.client(master.cluster.token(f"arena{n}"))
            for i in range(ROUNDS):
                body = os.urandom(4096)
                fid = c.upload(body, name=f"a{n}-{i}.bin")["file_id"]
                assert c.download(fid) == body
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]


@pytest.mark.skipif(bool(h.SANITIZE), reason="the sanitizers replace malloc")
def test_master_caps_its_malloc_arenas_at_one_per_cpu(cluster):
    m = cluster.start(workers=3, master_env={"MALLOC_ARENA_MAX": None})
    busy(m)
    cap = max(2, os.sysconf("SC_NPROCESSORS_ONLN"))
    heaps = arena_heaps(m.pid)
    assert heaps <= cap - 1, \
        f"the master has {heaps + 1} malloc arenas after {THREADS} busy clients; cap {cap}"


@pytest.mark.skipif(bool(h.SANITIZE), reason="the sanitizers replace malloc")
def test_master_malloc_arena_max_setting_is_kept(cluster):
    m = cluster.start(workers=3, master_env={"MALLOC_ARENA_MAX": 1})
    busy(m)
    assert arena_heaps(m.pid) == 0
