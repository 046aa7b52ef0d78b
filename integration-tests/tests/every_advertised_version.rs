//! ApiVersions must tell the truth: for every API and every version the broker advertises, a
//! well-formed request at that version gets a response that decodes at that version (with nothing
//! left over), carries the request's correlation id, and reports success. Clients pick the
//! highest common version, so a version that is advertised but broken fails only for some clients
//! (kcat's legacy consumer, an old Java client) and this test is where it shows.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use inlet_integration_tests::Broker;
use kafka_protocol::messages::{
    create_partitions_request, create_topics_request, delete_topics_request,
    describe_configs_request, fetch_request, list_offsets_request, metadata_request,
    produce_request, AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterClientQuotasRequest,
    AlterConfigsRequest, AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest,
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClientQuotasRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, DescribeLogDirsRequest, DescribeProducersRequest, DescribeQuorumRequest,
    DescribeTopicPartitionsRequest, DescribeTransactionsRequest, ElectLeadersRequest,
    EndTxnRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest,
    ListTransactionsRequest, MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader, ResponseHeader,
    SyncGroupRequest, TopicName, TxnOffsetCommitRequest, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The topic that Produce, Fetch, ListOffsets, Metadata and DescribeConfigs are aimed at.
const TOPIC: &str = "version-matrix";

/// One client connection speaking raw Kafka frames.
struct Wire<'a> {
    broker: &'a Broker,
    stream: TcpStream,
    next_correlation_id: i32,
}

impl<'a> Wire<'a> {
    fn connect(broker: &'a Broker) -> Wire<'a> {
        let stream = TcpStream::connect_timeout(&broker.addr(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", broker.addr()));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        Wire {
            broker,
            stream,
            next_correlation_id: 1,
        }
    }

    /// Sends `request` at `version` and returns the decoded response; fails the test if the
    /// connection closes, the correlation id differs, or the response does not decode exactly.
    fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let key = ApiKey::try_from(R::KEY).expect("a known API key");
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("inlet-version-matrix")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap_or_else(|e| panic!("encode the {key:?} v{version} request header: {e}"));
        request
            .encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encode the {key:?} v{version} request: {e}"));
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .unwrap_or_else(|e| panic!("send {key:?} v{version}: {e}"));

        let mut size = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut size) {
            panic!(
                "{key:?} v{version} is advertised, but the broker answered it by closing the \
                 connection ({e}); broker log:\n{}",
                self.broker.log_tail(10)
            );
        }
        let mut response = vec![0u8; u32::from_be_bytes(size) as usize];
        self.stream
            .read_exact(&mut response)
            .unwrap_or_else(|e| panic!("read the {key:?} v{version} response body: {e}"));
        let mut buf = Bytes::from(response);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .unwrap_or_else(|e| panic!("decode the {key:?} v{version} response header: {e}"));
        assert_eq!(
            header.correlation_id, correlation_id,
            "{key:?} v{version} correlation id"
        );
        let decoded = R::Response::decode(&mut buf, version)
            .unwrap_or_else(|e| panic!("decode the {key:?} v{version} response: {e}"));
        assert_eq!(
            buf.remaining(),
            0,
            "{key:?} v{version} response has {} bytes after its last field",
            buf.remaining()
        );
        decoded
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn create_topics(name: &str, partitions: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000)
}

/// Creates `name` at the highest advertised CreateTopics version, as setup for another API.
fn setup_topic(wire: &mut Wire, versions: &[(i16, i16, i16)], name: &str, partitions: i32) {
    let version = max_version(versions, ApiKey::CreateTopics);
    let response = wire.call(version, &create_topics(name, partitions));
    assert_eq!(response.topics.len(), 1);
    assert_eq!(
        response.topics[0].error_code, 0,
        "setup: create topic {name}"
    );
}

fn max_version(versions: &[(i16, i16, i16)], key: ApiKey) -> i16 {
    versions
        .iter()
        .find(|(k, _, _)| *k == key as i16)
        .map(|(_, _, max)| *max)
        .unwrap_or_else(|| panic!("{key:?} is not advertised"))
}

/// One record batch (magic 2, uncompressed) with one record.
fn record_batch(value: &str) -> Bytes {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    inlet_integration_tests::raw::plain_batch(
        Some(Bytes::from_static(b"matrix")),
        Bytes::from(value.to_string()),
        now_ms,
    )
}

fn check_produce(wire: &mut Wire, version: i16) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name(TOPIC))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(record_batch(&format!("produced at v{version}")))),
            ])]);
    let response = wire.call(version, &request);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "Produce v{version} error code");
    assert!(
        partition.base_offset >= 0,
        "Produce v{version} base offset {}",
        partition.base_offset
    );
}

/// Produce v0-2 are advertised only so that old librdkafka enables compression (as Kafka 4
/// does); a request at those versions closes the connection.
fn check_produce_refused(wire: &mut Wire, version: i16) {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .encode(&mut body, 1)
        .expect("encode a request header");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    wire.stream.write_all(&frame).expect("send the request");
    let mut byte = [0u8; 1];
    let read = wire.stream.read(&mut byte);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "Produce v{version} must close the connection, got {read:?}"
    );
}

fn check_fetch(wire: &mut Wire, version: i16) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name(TOPIC))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response = wire.call(version, &request);
    assert_eq!(
        response.error_code, 0,
        "Fetch v{version} top-level error code"
    );
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "Fetch v{version} error code");
    assert!(
        partition.high_watermark > 0,
        "Fetch v{version}: high watermark after produces"
    );
    let records = partition.records.as_ref().map(Bytes::len).unwrap_or(0);
    assert!(
        records > 0,
        "Fetch v{version} from offset 0 returned no records"
    );
}

fn check_list_offsets(wire: &mut Wire, version: i16) {
    for (timestamp, what) in [(-2i64, "earliest"), (-1, "latest")] {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp),
                ])]);
        let response = wire.call(version, &request);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(
            partition.error_code, 0,
            "ListOffsets v{version} {what}: error code"
        );
        if timestamp == -2 {
            assert_eq!(
                partition.offset, 0,
                "ListOffsets v{version} earliest offset"
            );
        } else {
            assert!(
                partition.offset > 0,
                "ListOffsets v{version} latest offset {}",
                partition.offset
            );
        }
    }
}

fn check_metadata(wire: &mut Wire, version: i16) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(topic_name(TOPIC)))]))
        // The field exists from v4; before that, auto-creation is implied (and the topic exists).
        .with_allow_auto_topic_creation(version < 4);
    let response = wire.call(version, &request);
    assert_eq!(response.brokers.len(), 1, "Metadata v{version} brokers");
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0, "Metadata v{version} topic error code");
    assert_eq!(
        topic.partitions.len(),
        1,
        "Metadata v{version} partitions of {TOPIC}"
    );
}

fn check_api_versions(wire: &mut Wire, version: i16) {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("inlet-version-matrix"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    let response = wire.call(version, &request);
    assert_eq!(response.error_code, 0, "ApiVersions v{version} error code");
    assert!(
        !response.api_keys.is_empty(),
        "ApiVersions v{version} lists APIs"
    );
}

fn check_create_topics(wire: &mut Wire, version: i16) {
    let name = format!("created-at-v{version}");
    let response = wire.call(version, &create_topics(&name, 2));
    assert_eq!(
        response.topics[0].error_code, 0,
        "CreateTopics v{version} error code"
    );
}

fn check_delete_topics(wire: &mut Wire, versions: &[(i16, i16, i16)], version: i16) {
    let name = format!("deleted-at-v{version}");
    setup_topic(wire, versions, &name, 1);
    let request = if version >= 6 {
        DeleteTopicsRequest::default()
            .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                .with_name(Some(topic_name(&name)))])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
    }
    .with_timeout_ms(10_000);
    let response = wire.call(version, &request);
    assert_eq!(
        response.responses[0].error_code, 0,
        "DeleteTopics v{version} error code"
    );
}

fn check_init_producer_id(wire: &mut Wire, version: i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let response = wire.call(version, &request);
    assert_eq!(
        response.error_code, 0,
        "InitProducerId v{version} error code"
    );
    assert!(
        response.producer_id.0 >= 0,
        "InitProducerId v{version} producer id"
    );
}

fn check_describe_configs(wire: &mut Wire, version: i16) {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2) // topic
            .with_resource_name(StrBytes::from_static_str(TOPIC))
            .with_configuration_keys(None),
    ]);
    let response = wire.call(version, &request);
    let result = &response.results[0];
    assert_eq!(
        result.error_code, 0,
        "DescribeConfigs v{version} error code"
    );
    assert!(
        !result.configs.is_empty(),
        "DescribeConfigs v{version} lists the topic's configs"
    );
}

fn check_create_partitions(wire: &mut Wire, versions: &[(i16, i16, i16)], version: i16) {
    let name = format!("grown-at-v{version}");
    setup_topic(wire, versions, &name, 1);
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic_name(&name))
                .with_count(3)
                .with_assignments(None),
        ])
        .with_timeout_ms(10_000);
    let response = wire.call(version, &request);
    assert_eq!(
        response.results[0].error_code, 0,
        "CreatePartitions v{version} error code"
    );
}

/// Sends the default (empty) request of `key` at `version` and decodes the response; false if
/// this test does not know the API's request type.
fn call_with_default_request(wire: &mut Wire, key: ApiKey, version: i16) -> bool {
    macro_rules! call_default {
        ($($api:ident => $request:ty),* $(,)?) => {
            match key {
                $(ApiKey::$api => {
                    wire.call(version, &<$request>::default());
                    true
                })*
                _ => false,
            }
        };
    }
    call_default! {
        AlterConfigs => AlterConfigsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeQuorum => DescribeQuorumRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        DescribeClientQuotas => DescribeClientQuotasRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
        DeleteRecords => DeleteRecordsRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        FindCoordinator => FindCoordinatorRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        JoinGroup => JoinGroupRequest,
        SyncGroup => SyncGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        DeleteGroups => DeleteGroupsRequest,
        OffsetDelete => OffsetDeleteRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        ElectLeaders => ElectLeadersRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
    }
}

#[test]
fn every_advertised_api_version_answers_well_formed_requests() {
    let broker = Broker::start();
    let mut wire = Wire::connect(&broker);

    let advertised = wire.call(3, &ApiVersionsRequest::default());
    assert_eq!(advertised.error_code, 0, "ApiVersions v3 error code");
    let versions: Vec<(i16, i16, i16)> = advertised
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    for (key, min, max) in &versions {
        assert!(min <= max, "api key {key}: versions {min}..={max}");
    }

    // Produce goes first so Fetch and ListOffsets find records; Metadata and DescribeConfigs
    // only need the topic to exist.
    setup_topic(&mut wire, &versions, TOPIC, 1);
    let order = [
        ApiKey::ApiVersions,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::CreatePartitions,
        ApiKey::DescribeConfigs,
        ApiKey::InitProducerId,
    ];
    // Each (api, version) on a fresh connection, so one failure (which may close the
    // connection) does not hide the others; all failures are reported together.
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut plan: Vec<(ApiKey, i16, i16)> = Vec::new();
    for key in order {
        match versions.iter().find(|(k, _, _)| *k == key as i16) {
            Some(&(_, min, max)) => plan.push((key, min, max)),
            None => failures.push(format!(
                "{key:?} is not advertised, but Kafka clients need it"
            )),
        }
    }
    // APIs beyond the core set get a default (empty) request at each version: no error-code
    // checks, but the response must still come back and decode at that version.
    for &(key, min, max) in &versions {
        match ApiKey::try_from(key) {
            Ok(api) if order.contains(&api) => {}
            Ok(api) => plan.push((api, min, max)),
            Err(()) => failures.push(format!("advertised api key {key} is not a Kafka API")),
        }
    }
    for (key, min, max) in plan {
        for version in min..=max {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut wire = Wire::connect(&broker);
                match key {
                    ApiKey::ApiVersions => check_api_versions(&mut wire, version),
                    ApiKey::Produce if version < 3 => check_produce_refused(&mut wire, version),
                    ApiKey::Produce => check_produce(&mut wire, version),
                    ApiKey::Fetch => check_fetch(&mut wire, version),
                    ApiKey::ListOffsets => check_list_offsets(&mut wire, version),
                    ApiKey::Metadata => check_metadata(&mut wire, version),
                    ApiKey::CreateTopics => check_create_topics(&mut wire, version),
                    ApiKey::DeleteTopics => check_delete_topics(&mut wire, &versions, version),
                    ApiKey::CreatePartitions => {
                        check_create_partitions(&mut wire, &versions, version)
                    }
                    ApiKey::DescribeConfigs => check_describe_configs(&mut wire, version),
                    ApiKey::InitProducerId => check_init_producer_id(&mut wire, version),
                    other => {
                        if !call_with_default_request(&mut wire, other, version) {
                            panic!("advertised, and this test has no request for it: add one");
                        }
                    }
                }
            }));
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".to_string());
                let first_line = message.lines().next().unwrap_or_default().to_string();
                failures.push(format!("{key:?} v{version}: {first_line}"));
            }
            checked += 1;
        }
    }
    eprintln!(
        "checked {checked} (api, version) pairs, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "advertised versions that do not work:\n  {}",
        failures.join("\n  ")
    );
}
