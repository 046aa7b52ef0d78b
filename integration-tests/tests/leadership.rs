//! Automatic preferred-leader rebalancing (`auto.leader.rebalance.enable`): after a broker is
//! killed its partitions are led by the others; once it is back and in sync, the active controller
//! gives it its preferred partitions back by itself.

use std::collections::BTreeMap;
use std::time::Duration;

use inlet_integration_tests::cluster::{runtime, start_cluster_with, wait_for};
use inlet_integration_tests::kafka::client_config;
use inlet_integration_tests::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

const TOPIC: &str = "balanced";

/// Per partition: (leader, preferred leader, ISR size), as `via` tells it.
fn leaders(via: &Broker) -> Option<BTreeMap<i32, (i32, i32, usize)>> {
    let consumer: BaseConsumer = client_config(&via.bootstrap()).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(3))
        .ok()?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == TOPIC && t.error().is_none())?;
    let found: BTreeMap<_, _> = topic
        .partitions()
        .iter()
        .filter_map(|p| Some((p.id(), (p.leader(), *p.replicas().first()?, p.isr().len()))))
        .collect();
    (found.len() == 6).then_some(found)
}

#[test]
fn leadership_returns_to_preferred_replicas_by_itself() {
    let mut nodes = start_cluster_with(&["--leader-imbalance-check-interval-seconds", "1"]);
    let bootstrap = nodes[1].bootstrap();
    runtime().block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            client_config(&bootstrap).create().expect("admin client");
        let topic = NewTopic::new(TOPIC, 6, TopicReplication::Fixed(3));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        for result in admin
            .create_topics([&topic], &options)
            .await
            .expect("CreateTopics")
        {
            result.expect("topic created");
        }
    });
    let balanced =
        |l: &BTreeMap<i32, (i32, i32, usize)>| l.values().all(|(led, pref, _)| led == pref);
    wait_for("preferred leaders at creation", || {
        leaders(&nodes[1]).filter(balanced)
    });

    nodes[0].kill9();
    wait_for("node 1's partitions led elsewhere", || {
        leaders(&nodes[1]).filter(|l| l.values().all(|(led, _, _)| *led != 1))
    });
    nodes[0].restart();
    let (_, took) = wait_for("leadership back on node 1 without a request", || {
        leaders(&nodes[1]).filter(|l| balanced(l) && l.values().all(|(_, _, isr)| *isr == 3))
    });
    eprintln!("leadership balanced {took:?} after node 1 restarted");
}
