"""Fixtures that run `pinion serve` for the black-box tests.

- `start_broker(*args, metrics=False)`: starts a broker for one test and
  stops it at teardown (SIGTERM, SIGKILL after a timeout), checks that it
  neither crashed nor panicked and exited 0, and removes its data dir.
- `shared_broker`: one broker per test module (6 partitions per
  auto-created topic), for the client suites; each test uses its own topics.

When a test fails, the tail of the stderr of every broker still alive is
attached to its report.
"""

import pytest

from pinion_broker import Broker, make_data_dir

# Small segments make the logs roll during the tests, and bound what the
# hundred-odd partitions of a run reserve on disk (preallocation starts at
# 4 MiB per active segment and never passes the segment size).
DEFAULT_ARGS = {"--log-segment-bytes": str(4 << 20)}

# Brokers not torn down yet, whose logs a failure report shows.
_LIVE_BROKERS = []


class BrokerFactory:
    def __init__(self, log_dir, label):
        self.log_dir = log_dir
        self.label = label
        self.brokers = []

    def __call__(self, *args, metrics=False, name=None, data_dir=None, start=True):
        index = len(self.brokers)
        name = name or f"{self.label}-{index}"
        args = list(args)
        for flag, value in DEFAULT_ARGS.items():
            if flag not in args:
                args += [flag, value]
        broker = Broker(
            data_dir or make_data_dir(prefix=f"pinion-{name}-"),
            self.log_dir / f"{name}.log",
            args=args,
            name=name,
        )
        self.brokers.append(broker)
        _LIVE_BROKERS.append(broker)
        if start:
            broker.start(metrics=metrics)
        return broker

    def close(self, lenient=False):
        """Stops every broker; fails the test if one crashed, panicked or
        did not exit 0 on SIGTERM (unless `lenient`: the test was an
        expected failure, which may well have crashed it)."""
        problems = []
        for broker in self.brokers:
            mine = []
            if broker.process is not None and broker.process.poll() is not None and not broker.exit_expected:
                mine.append(f"{broker.name} exited by itself with status {broker.process.returncode}")
            code = broker.stop()
            if code not in (0, None):
                mine.append(f"{broker.name} exited with status {code} after SIGTERM (expected a clean 0)")
            panics = broker.panics()
            if panics:
                mine.append(f"{broker.name} panicked: {panics[:3]}")
            if mine:
                problems += mine + [broker.log_tail()]
            broker.remove_data()
            if broker in _LIVE_BROKERS:
                _LIVE_BROKERS.remove(broker)
        if problems and not lenient:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def start_broker(request, tmp_path_factory):
    factory = BrokerFactory(tmp_path_factory.mktemp("broker-logs"), request.node.name[:60].replace("/", "_"))
    yield factory
    factory.close(lenient=getattr(request.node, "pinion_xfailed", False))


@pytest.fixture(scope="module")
def shared_broker(request, tmp_path_factory):
    factory = BrokerFactory(tmp_path_factory.mktemp("broker-logs"), request.module.__name__)
    broker = factory("--num-partitions", "6")
    yield broker
    factory.close()


@pytest.fixture(autouse=True)
def shared_broker_survives(request):
    """Blames the test during which the module's shared broker died."""
    yield
    if "shared_broker" in request.fixturenames:
        broker = request.getfixturevalue("shared_broker")
        if not broker.running() and not getattr(request.node, "pinion_xfailed", False):
            pytest.fail(f"the shared broker died during this test\n{broker.log_tail()}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call" and hasattr(report, "wasxfail"):
        item.pinion_xfailed = True
    if report.failed:
        for broker in _LIVE_BROKERS:
            report.sections.append((f"pinion stderr ({broker.name})", broker.log_tail()))
    return report
