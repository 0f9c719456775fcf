"""`transparent_hugepages`: by default the broker keeps its memory off
transparent huge pages (each fresh 2 MiB page is zeroed inside a request,
which cost the end-to-end p99 at a moderate rate 4x); the option and the
throughput profile allow them again. What a user checks is the kernel's own
view of the process: the `THP_enabled` line of /proc/PID/status."""

import pytest


def thp_enabled(broker):
    with open(f"/proc/{broker.process.pid}/status") as status:
        for line in status:
            if line.startswith("THP_enabled:"):
                return line.split(":", 1)[1].strip()
    pytest.fail("/proc/PID/status has no THP_enabled line (a kernel without transparent huge pages?)")


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), "0"),
        (("--transparent-hugepages", "true"), "1"),
        (("--profile", "throughput"), "1"),
        (("--profile", "throughput", "--transparent-hugepages", "false"), "0"),
    ],
    ids=["default-off", "flag-on", "throughput-profile-on", "flag-overrides-profile"],
)
def test_the_broker_process_uses_transparent_hugepages_only_when_asked(start_broker, args, expected):
    broker = start_broker(*args)
    assert thp_enabled(broker) == expected
