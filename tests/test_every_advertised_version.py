"""Every version of every API the broker advertises in ApiVersions, spoken
through kafka-python's schema-generated message classes: each response must
decode exactly (no byte missing or left over) and carry no error. Real
clients each pick one version per API; this covers the rest (the Java
client's newest versions among them)."""

import pytest
from kafka.protocol.admin.cluster import DescribeClusterRequest, DescribeClusterResponse
from kafka.protocol.admin.configs import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from kafka.protocol.admin.topics import (
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
)
from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
from kafka.protocol.consumer.offsets import ListOffsetsRequest, ListOffsetsResponse
from kafka.protocol.metadata.api_versions import ApiVersionsRequest, ApiVersionsResponse
from kafka.protocol.metadata.metadata import MetadataRequest, MetadataResponse
from kafka.protocol.producer.produce import ProduceRequest, ProduceResponse

import kafka_wire as wire
from confluent_helpers import create_topic
from kafka_messages import call, error_codes

TOPIC_RESOURCE = 2


@pytest.fixture(scope="module")
def advertised(shared_broker):
    with wire.Connection(shared_broker.port) as conn:
        error_code, apis = wire.parse_api_versions_v0(conn.roundtrip(wire.API_API_VERSIONS, 0, b""))
    assert error_code == wire.ERROR_NONE
    return apis


def versions(advertised, request_cls):
    low, high = advertised[request_cls.API_KEY]
    assert high <= request_cls.max_version, f"{request_cls.__name__} v{high} is newer than kafka-python knows"
    return range(low, high + 1)


def sweep(shared_broker, advertised, request_cls, response_cls, make_request, check=None):
    """Sends make_request(version) at each advertised version."""
    with wire.Connection(shared_broker.port) as conn:
        for version in versions(advertised, request_cls):
            response = call(conn, request_cls, response_cls, version, make_request(version))
            errors = error_codes(response)
            assert not errors, f"{request_cls.__name__} v{version}: {errors}\n{response}"
            if check is not None:
                check(version, response)


def test_api_versions(shared_broker, advertised):
    def check(version, response):
        listed = {entry["api_key"]: (entry["min_version"], entry["max_version"]) for entry in response["api_keys"]}
        assert listed == advertised, f"v{version} lists other APIs than v0"

    sweep(
        shared_broker,
        advertised,
        ApiVersionsRequest,
        ApiVersionsResponse,
        lambda version: {"client_software_name": "pinion-tests", "client_software_version": "1.0"},
        check,
    )


def test_metadata(shared_broker, advertised):
    create_topic(shared_broker.bootstrap, "sweep-metadata", 3)

    def check(version, response):
        (topic,) = response["topics"]
        assert topic["name"] == "sweep-metadata", topic
        assert sorted(p["partition_index"] for p in topic["partitions"]) == [0, 1, 2]
        assert [(b["node_id"], b["host"], b["port"]) for b in response["brokers"]] == [(0, "127.0.0.1", shared_broker.port)]

    sweep(
        shared_broker,
        advertised,
        MetadataRequest,
        MetadataResponse,
        lambda version: {"topics": [{"name": "sweep-metadata"}], "allow_auto_topic_creation": False},
        check,
    )


def test_produce_fetch_and_list_offsets(shared_broker, advertised):
    topic = "sweep-data"
    create_topic(shared_broker.bootstrap, topic, 1)
    produced = []

    def produce_request(version):
        batch = wire.record_batch([(b"k", b"produce-v%d" % version)])
        return {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 10_000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
        }

    def check_produce(version, response):
        (partition,) = response["responses"][0]["partition_responses"]
        assert partition["base_offset"] == len(produced), partition
        produced.append(b"produce-v%d" % version)

    sweep(shared_broker, advertised, ProduceRequest, ProduceResponse, produce_request, check_produce)

    def fetch_request(version):
        return {
            "replica_id": -1,
            "max_wait_ms": 100,
            "min_bytes": 1,
            "max_bytes": 1 << 20,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0, "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}],
            "forgotten_topics_data": [],
            "rack_id": "",
        }

    def check_fetch(version, response):
        (partition,) = response["responses"][0]["partitions"]
        assert partition["high_watermark"] == len(produced), partition
        records = partition["records"]
        records = bytes(records)
        for value in produced:
            assert value in records, f"Fetch v{version}: {value!r} missing from the records"

    sweep(shared_broker, advertised, FetchRequest, FetchResponse, fetch_request, check_fetch)

    for timestamp, expected in [(-1, len(produced)), (-2, 0), (0, 0)]:

        def list_request(version, timestamp=timestamp):
            partition = {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
            return {"replica_id": -1, "isolation_level": 0, "topics": [{"name": topic, "partitions": [partition]}]}

        def check_list(version, response, expected=expected, timestamp=timestamp):
            (partition,) = response["topics"][0]["partitions"]
            assert partition["offset"] == expected, f"ListOffsets v{version} timestamp {timestamp}: {partition}"

        sweep(shared_broker, advertised, ListOffsetsRequest, ListOffsetsResponse, list_request, check_list)


def test_topic_administration(shared_broker, advertised):
    def create_request(version):
        topic = {"name": f"sweep-create-v{version}", "num_partitions": 2, "replication_factor": 1, "assignments": [], "configs": []}
        return {"topics": [topic], "timeout_ms": 10_000, "validate_only": False}

    def check_create(version, response):
        (topic,) = response["topics"]
        assert topic["name"] == f"sweep-create-v{version}"
        if version >= 5:
            assert topic["num_partitions"] == 2 and topic["replication_factor"] == 1, topic

    sweep(shared_broker, advertised, CreateTopicsRequest, CreateTopicsResponse, create_request, check_create)

    count = {"sweep-create-v2": 2}

    def grow_request(version):
        count["sweep-create-v2"] += 1
        return {"topics": [{"name": "sweep-create-v2", "count": count["sweep-create-v2"], "assignments": None}], "timeout_ms": 10_000, "validate_only": False}

    sweep(shared_broker, advertised, CreatePartitionsRequest, CreatePartitionsResponse, grow_request)

    def delete_request(version):
        create_topic(shared_broker.bootstrap, f"sweep-delete-v{version}", 1)
        name = f"sweep-delete-v{version}"
        if version >= 6:
            return {"topics": [{"name": name}], "timeout_ms": 10_000}
        return {"topic_names": [name], "timeout_ms": 10_000}

    sweep(shared_broker, advertised, DeleteTopicsRequest, DeleteTopicsResponse, delete_request)


def test_configs_and_cluster(shared_broker, advertised):
    topic = "sweep-configs"
    create_topic(shared_broker.bootstrap, topic, 1)
    retention = {}

    def alter_request(version):
        retention["ms"] = str(3_600_000 + version)
        config = {"name": "retention.ms", "config_operation": 0, "value": retention["ms"]}
        return {"resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": topic, "configs": [config]}], "validate_only": False}

    sweep(shared_broker, advertised, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_request)

    def replace_request(version):
        retention["ms"] = str(7_200_000 + version)
        config = {"name": "retention.ms", "value": retention["ms"]}
        return {"resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": topic, "configs": [config]}], "validate_only": False}

    sweep(shared_broker, advertised, AlterConfigsRequest, AlterConfigsResponse, replace_request)

    def describe_request(version):
        resource = {"resource_type": TOPIC_RESOURCE, "resource_name": topic, "configuration_keys": None}
        return {"resources": [resource], "include_synonyms": False, "include_documentation": False}

    def check_describe(version, response):
        (result,) = response["results"]
        configs = {entry["name"]: entry["value"] for entry in result["configs"]}
        assert configs["retention.ms"] == retention["ms"], f"DescribeConfigs v{version}: {configs}"

    sweep(shared_broker, advertised, DescribeConfigsRequest, DescribeConfigsResponse, describe_request, check_describe)

    def check_cluster(version, response):
        assert response["cluster_id"]
        assert [(b["broker_id"], b["host"], b["port"]) for b in response["brokers"]] == [(0, "127.0.0.1", shared_broker.port)]

    sweep(
        shared_broker,
        advertised,
        DescribeClusterRequest,
        DescribeClusterResponse,
        lambda version: {"include_cluster_authorized_operations": False, "endpoint_type": 1},
        check_cluster,
    )
