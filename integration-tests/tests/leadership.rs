//! Where partitions live and who leads them, changed by the cluster itself and by an operator:
//! automatic preferred-leader rebalancing (`auto.leader.rebalance.enable`) gives a broker back
//! its partitions after it was killed and restarted; `inlet topic reassign` moves a partition to
//! other brokers while a producer writes to it, and nothing acknowledged is lost.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use inlet_integration_tests::cluster::{runtime, start_cluster_with, wait_for};
use inlet_integration_tests::history::{bootstrap, partitions};
use inlet_integration_tests::kafka::{consume_all, create_replicated_topic, producer_config};
use inlet_integration_tests::{inlet, Broker};
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "balanced";

/// Per partition: (leader, preferred leader, ISR size), as `via` tells it; all six or None.
fn leaders(via: &Broker) -> Option<BTreeMap<i32, (i32, i32, usize)>> {
    let found: BTreeMap<_, _> = partitions(via, TOPIC)?
        .into_iter()
        .filter_map(|(id, p)| Some((id, (p.leader, *p.replicas.first()?, p.isr.len()))))
        .collect();
    (found.len() == 6).then_some(found)
}

#[test]
fn leadership_returns_to_preferred_replicas_by_itself() {
    let mut nodes = start_cluster_with(&["--leader-imbalance-check-interval-seconds", "1"]);
    let bootstrap = nodes[1].bootstrap();
    runtime().block_on(create_replicated_topic(
        &bootstrap,
        TOPIC,
        6,
        3,
        &[],
        Duration::from_secs(20),
    ));
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

#[test]
fn a_partition_moves_to_other_brokers_while_a_producer_writes() {
    let nodes = start_cluster_with(&["--replica-lag-time-max-ms", "2000"]);
    let bootstrap = bootstrap(&nodes);
    inlet(
        &bootstrap,
        &[
            "topic",
            "create",
            "moving",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    );
    let (from, _) = wait_for("the partition placed", || {
        let leader = partitions(&nodes[0], "moving")?.get(&0)?.leader;
        (leader > 0).then_some(leader)
    });
    let target: Vec<i32> = (1..=3).filter(|&b| b != from).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
        std::thread::spawn(move || {
            let producer: FutureProducer = producer_config(&bootstrap, "none")
                .create()
                .expect("producer");
            let rt = runtime();
            let mut acked = 0usize;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || acked < 2_000 {
                let futures: Vec<_> = (0..100)
                    .map(|_| {
                        n += 1;
                        producer
                            .send_result(
                                FutureRecord::<(), _>::to("moving").payload(&n.to_string()),
                            )
                            .expect("enqueue")
                    })
                    .collect();
                rt.block_on(async {
                    for future in futures {
                        if let Ok(Ok(_)) = future.await {
                            acked += 1;
                        }
                    }
                });
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let targets = format!("{},{}", target[0], target[1]);
    inlet(
        &bootstrap,
        &[
            "topic",
            "reassign",
            "moving",
            "--partition",
            "0",
            "--replicas",
            &targets,
        ],
    );
    let (_, took) = wait_for("the move to complete", || {
        let p = partitions(&nodes[0], "moving")?.get(&0)?.clone();
        let isr: Vec<i32> = p.isr.into_iter().collect();
        (p.replicas == target && isr == target && p.leader == target[0]).then_some(())
    });
    eprintln!("moved from {from} to {targets} in {took:?}");
    assert!(inlet(&bootstrap, &["topic", "reassignments"]).contains("no reassignment"));
    stop.store(true, Ordering::Relaxed);
    let acked = producer.join().expect("producer thread");

    // Every acknowledged record is on the new replicas, once.
    let records = consume_all(&bootstrap, "moving", 1, acked, Duration::from_secs(30));
    let mut values: Vec<u64> = records
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                .parse()
                .unwrap()
        })
        .collect();
    let total = values.len();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), total, "duplicates after the move");
    assert!(total >= acked, "{total} records read, {acked} acknowledged");
}
