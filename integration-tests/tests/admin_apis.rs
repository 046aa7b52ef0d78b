//! Admin APIs that Kafka's own tools and newer admin clients call, answered as Kafka answers
//! them, driven over the wire against a real broker. No client in this suite's languages sends
//! DescribeTopicPartitions (Kafka 3.8+'s Java admin client does), so the requests are built here.

use std::time::Duration;

use inlet_integration_tests::cluster::runtime;
use inlet_integration_tests::kafka::create_replicated_topic;
use inlet_integration_tests::Broker;
use inlet_protocol::client::Client;
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// DescribeTopicPartitions pages through every partition of every topic, sorted by name, at most
/// `response_partition_limit` partitions an answer, each answer's cursor naming the next one.
#[test]
fn describe_topic_partitions_pages_through_all_partitions_with_a_cursor() {
    let broker = Broker::start();
    let rt = runtime();
    for (topic, partitions) in [("beta", 2), ("alpha", 5)] {
        rt.block_on(create_replicated_topic(
            &broker.bootstrap(),
            topic,
            partitions,
            1,
            &[],
            Duration::from_secs(10),
        ));
    }
    rt.block_on(async {
        let mut client = Client::connect(broker.bootstrap(), "admin-apis")
            .await
            .expect("connect");
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let request = DescribeTopicPartitionsRequest::default()
                .with_response_partition_limit(3)
                .with_cursor(cursor.take());
            let response = client.send(request).await.expect("DescribeTopicPartitions");
            let page: Vec<(String, i32, i32)> = response
                .topics
                .iter()
                .flat_map(|t| {
                    assert_eq!(t.error_code, 0, "{t:?}");
                    assert!(!t.is_internal);
                    let topic = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                    t.partitions
                        .iter()
                        .map(move |p| (topic.clone(), p.partition_index, p.leader_id.0))
                })
                .collect();
            pages.push(page);
            match response.next_cursor {
                Some(next) => {
                    cursor = Some(
                        Cursor::default()
                            .with_topic_name(next.topic_name)
                            .with_partition_index(next.partition_index),
                    )
                }
                None => break,
            }
            assert!(pages.len() < 10, "the cursor never ends: {pages:?}");
        }
        let shape: Vec<Vec<(&str, i32)>> = pages
            .iter()
            .map(|page| page.iter().map(|(t, p, _)| (t.as_str(), *p)).collect())
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![("alpha", 0), ("alpha", 1), ("alpha", 2)],
                vec![("alpha", 3), ("alpha", 4), ("beta", 0)],
                vec![("beta", 1)],
            ]
        );
        assert!(pages.iter().flatten().all(|(_, _, leader)| *leader == 1));

        // A named unknown topic, and a cursor that points nowhere.
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(name("missing"))])
            .with_response_partition_limit(100);
        let response = client.send(request).await.expect("DescribeTopicPartitions");
        assert_eq!(
            response.topics[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(name("alpha"))])
            .with_cursor(Some(
                Cursor::default()
                    .with_topic_name(name("alpha"))
                    .with_partition_index(-1),
            ));
        let response = client.send(request).await.expect("DescribeTopicPartitions");
        assert_eq!(
            response.topics[0].error_code,
            ResponseError::InvalidRequest.code()
        );
    });
}
