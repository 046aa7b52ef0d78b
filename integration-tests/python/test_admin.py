"""Admin calls of confluent-kafka's AdminClient that operations tools and scripts make, against a
real broker process.

* `alter_configs` (the legacy AlterConfigs API, the only config call kafkajs has): the request is
  the topic's whole set of overrides, so overrides it leaves out are removed; a bad value changes
  nothing; `describe_configs` shows the result.
"""

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic


def admin_client(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def overrides(admin, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(timeout=20)
    return {
        name: entry.value
        for name, entry in described.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    }


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_replaces_the_topics_whole_set_of_overrides(broker):
    admin = admin_client(broker.bootstrap)
    created = admin.create_topics([NewTopic("configured", 1, 1, config={"retention.ms": "86400000"})])
    created["configured"].result(timeout=20)
    assert overrides(admin, "configured") == {"retention.ms": "86400000"}

    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "configured",
        set_config={"cleanup.policy": "compact", "segment.ms": "3600000"},
    )
    admin.alter_configs([resource])[resource].result(timeout=20)
    # retention.ms was not in the new set, so its override is gone.
    assert overrides(admin, "configured") == {"cleanup.policy": "compact", "segment.ms": "3600000"}

    bad = ConfigResource(
        ConfigResource.Type.TOPIC, "configured", set_config={"segment.ms": "soon"}
    )
    with pytest.raises(KafkaException) as raised:
        admin.alter_configs([bad])[bad].result(timeout=20)
    assert raised.value.args[0].name() == "INVALID_CONFIG"
    assert overrides(admin, "configured") == {"cleanup.policy": "compact", "segment.ms": "3600000"}

    only_checked = ConfigResource(
        ConfigResource.Type.TOPIC, "configured", set_config={"retention.ms": "1000"}
    )
    admin.alter_configs([only_checked], validate_only=True)[only_checked].result(timeout=20)
    assert overrides(admin, "configured") == {"cleanup.policy": "compact", "segment.ms": "3600000"}
