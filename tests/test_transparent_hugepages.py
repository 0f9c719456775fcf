"""Transparent huge pages: the broker's O_DIRECT buffers use them, its heap
does not (each fresh 2 MiB heap page is zeroed inside a request, which cost
the end-to-end p99 at a moderate rate 4x; on 4 KiB pages a 1 MiB O_DIRECT
buffer is 256 scattered pages, which slows disk reads). What a user checks
is the kernel's own view of the process: `AnonHugePages` of each mapping in
/proc/PID/smaps, split by the `hg` flag that `MADV_HUGEPAGE` sets, held
against the bytes the broker says it mapped for I/O buffers
(`pinion_io_buffer_bytes`), and the `THP_enabled` line of /proc/PID/status."""

import os

import pytest

from confluent_helpers import produce
from test_metrics import scrape

HOST_MODE_PATH = "/sys/kernel/mm/transparent_hugepage/enabled"

# Enough 1 KiB messages, produced fast, for the broker to write whole 1 MiB
# O_DIRECT buffers.
MESSAGES = 24_000


def host_mode():
    if not os.path.exists(HOST_MODE_PATH):
        return None
    with open(HOST_MODE_PATH) as f:
        text = f.read()
    return text.split("[", 1)[1].split("]", 1)[0]


def thp_enabled(broker):
    with open(f"/proc/{broker.process.pid}/status") as status:
        for line in status:
            if line.startswith("THP_enabled:"):
                return line.split(":", 1)[1].strip()
    pytest.fail("/proc/PID/status has no THP_enabled line (a kernel without transparent huge pages?)")


def huge_page_bytes(broker):
    """(bytes on huge pages in mappings advised for them, in the others)."""
    advised = other = 0
    huge_kib = 0
    with open(f"/proc/{broker.process.pid}/smaps") as smaps:
        for line in smaps:
            if line.startswith("AnonHugePages:"):
                huge_kib = int(line.split()[1])
            elif line.startswith("VmFlags:"):
                if "hg" in line.split()[1:]:
                    advised += huge_kib << 10
                else:
                    other += huge_kib << 10
                huge_kib = 0
    return advised, other


def write_some_data(broker):
    delivered, errors = produce(
        broker.bootstrap,
        "thp",
        [(str(i).encode(), b"%08d" % i + b"v" * 992) for i in range(MESSAGES)],
        partition=0,
        acks=1,
        linger_ms=20,
        batch_size=1 << 20,
    )
    assert not errors and len(delivered) == MESSAGES


def broker_after_writing(start_broker, args):
    """A broker started with `args` that has written some data, the host's
    mode, and (advised huge-page bytes, other huge-page bytes,
    pinion_io_buffer_bytes)."""
    mode = host_mode()
    if mode is None:
        pytest.skip("this kernel has no transparent huge pages")
    broker = start_broker(*args, metrics=True)
    write_some_data(broker)
    advised, other = huge_page_bytes(broker)
    [(_, io_buffer_bytes)] = scrape(broker)["pinion_io_buffer_bytes"]
    return broker, mode, (advised, other, io_buffer_bytes)


@pytest.mark.parametrize(
    "args",
    [(), ("--profile", "throughput", "--transparent-hugepages", "false")],
    ids=["default", "flag-overrides-profile"],
)
def test_the_io_buffers_use_huge_pages_and_the_heap_does_not(start_broker, args):
    broker, mode, (advised, other, io_buffer_bytes) = broker_after_writing(start_broker, args)
    assert other == 0, f"{other} bytes of the heap are on huge pages"
    assert io_buffer_bytes > 0, "the broker mapped no O_DIRECT buffer of its own"
    # Only the I/O buffers asked for huge pages.
    assert advised <= io_buffer_bytes, f"{advised} bytes on advised huge pages, {io_buffer_bytes} of them I/O buffers"
    if mode == "madvise":
        # (With `always` on a kernel before 6.18 the broker can only turn
        # them off for the whole process.)
        assert advised > 0, "no O_DIRECT buffer is on a huge page"
        assert thp_enabled(broker) == "1"


@pytest.mark.parametrize(
    "args",
    [("--transparent-hugepages", "true"), ("--profile", "throughput")],
    ids=["flag-on", "throughput-profile-on"],
)
def test_the_heap_may_use_huge_pages_when_asked(start_broker, args):
    broker, mode, (advised, other, io_buffer_bytes) = broker_after_writing(start_broker, args)
    assert thp_enabled(broker) == ("0" if mode == "never" else "1")
    if mode == "madvise":
        # The heap never asks for them, so the host gives it none.
        assert other == 0
        assert 0 < advised <= io_buffer_bytes
    elif mode == "always":
        assert other > 0, "the heap should be on huge pages where the host's mode is `always`"
