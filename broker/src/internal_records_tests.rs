//! The decoders of the internal topics' records (`__consumer_offsets`: classic groups, offsets,
//! KIP-848 consumer groups; `__transaction_state`) read what a damaged disk or a buggy peer may
//! leave: arbitrary bytes, and valid records cut short or with bytes changed, must give an error
//! or a value, never a panic (nor an allocation sized by a damaged length).

use bytes::Bytes;
use proptest::prelude::*;

use crate::group::consumer::records::{self, ConsumerKey, Stored};
use crate::group::log_format::{self, StoredGroup, StoredMember};
use crate::group::state::CommittedOffset;
use crate::txn::log_format as txn_format;
use crate::txn::state::TxnMetadata;

/// Every decoder, on `data`.
fn decode_everything(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let _ = log_format::decode_key(bytes.clone());
    let _ = log_format::decode_offset(bytes.clone());
    let _ = log_format::decode_group(bytes.clone());
    let _ = txn_format::decode_key(bytes.clone());
    let _ = txn_format::decode_value("tx", bytes.clone());
    for kind in [
        records::METADATA,
        records::MEMBER,
        records::TARGET_METADATA,
        records::TARGET_MEMBER,
        records::CURRENT_MEMBER,
        0,
        -1,
        i16::MAX,
    ] {
        let _ = records::decode_key(kind, &mut bytes.clone());
        let member = matches!(
            kind,
            records::MEMBER | records::TARGET_MEMBER | records::CURRENT_MEMBER
        )
        .then(|| "m".to_string());
        let key = ConsumerKey {
            kind,
            group: "g".into(),
            member,
        };
        let stored = Stored {
            records: [(key, bytes.clone())].into(),
        };
        let _ = stored.restore(0);
    }
}

/// Valid encodings of each kind of record, to damage.
fn valid_records() -> Vec<Vec<u8>> {
    let offset = CommittedOffset {
        offset: 42,
        leader_epoch: 3,
        metadata: "meta".into(),
        commit_timestamp_ms: 1_700_000_000_000,
    };
    let group = StoredGroup {
        protocol_type: "consumer".into(),
        generation: 7,
        protocol: Some("range".into()),
        leader: Some("m-1".into()),
        state_timestamp_ms: 1,
        members: vec![StoredMember {
            member_id: "m-1".into(),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            subscription: Bytes::from_static(b"\x00\x01sub"),
            assignment: Bytes::from_static(b"\x00\x01asg"),
            ..StoredMember::default()
        }],
    };
    let mut txn = TxnMetadata::new("tx-1", 4000, 60_000, 1_000);
    txn.partitions = [("orders".to_string(), 0), ("orders".to_string(), 5)]
        .into_iter()
        .collect();
    vec![
        log_format::encode_offset(&offset).to_vec(),
        log_format::encode_group(&group).to_vec(),
        txn_format::encode_key("tx-1").to_vec(),
        txn_format::encode_value(&txn).to_vec(),
        records::encode_key(&ConsumerKey {
            kind: records::CURRENT_MEMBER,
            group: "g".into(),
            member: Some("m".into()),
        })
        .to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&data);
    }

    #[test]
    fn damaged_valid_records_never_panic(
        which in 0usize..5,
        cut in any::<prop::sample::Index>(),
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut record = valid_records().swap_remove(which);
        for (at, byte) in changes {
            let i = at.index(record.len());
            record[i] = byte;
        }
        decode_everything(&record);
        let keep = cut.index(record.len() + 1);
        decode_everything(&record[..keep]);
    }
}
