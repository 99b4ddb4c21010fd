//! Poison messages land in the dead-letter topic and table with their reason and origin.

use apex_ingest::kafka::dead_letter_topic::headers;
use apex_ingest::model::{Format, Origin};
use std::collections::BTreeMap;

use crate::members::*;
use crate::support::kafka_brokers;
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_land_in_the_dlq_topic_and_table_with_reason_and_origin() {
    let brokers = kafka_brokers();
    let _serial = SERIAL.lock().await;
    let names = create_topics(&brokers, 2, 1).await;
    produce_to(&brokers, &names.samsara, Format::Samsara, 400, 0.2, 9).await;
    produce_to(&brokers, &names.edi, Format::Edi, 100, 0.2, 10).await;
    let want = expected(&brokers, &names);
    assert!(want.poison.len() > 20, "{} poison messages", want.poison.len());

    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::start(&brokers, &names, dir.path(), "max_wait = \"1s\"");
    wait_until_committed_to_end(&brokers, &names).await;
    assert!(member.terminate().await.success(), "{}", member.logs());
    let stored = stored(dir.path()).await;
    assert_exactly_once(&stored, &want);

    let table: BTreeMap<Origin, &apex_ingest::model::DeadLetter> =
        stored.dead.iter().map(|d| (d.origin.clone(), d)).collect();
    let published = read_topic(&brokers, &names.dlq, Format::Samsara);
    assert_eq!(published.len(), want.poison.len(), "one DLQ message per poison message");
    for m in &published {
        let header = |k: &str| {
            let v = m.headers.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            String::from_utf8(v.unwrap_or_else(|| panic!("header {k} missing"))).unwrap()
        };
        let origin = Origin {
            topic: header(headers::ORIGIN_TOPIC),
            partition: header(headers::ORIGIN_PARTITION).parse().unwrap(),
            offset: header(headers::ORIGIN_OFFSET).parse().unwrap(),
        };
        let letter = table.get(&origin).unwrap_or_else(|| panic!("{origin:?} not in the table"));
        assert_eq!(header(headers::REASON), letter.reason);
        assert_eq!(header(headers::ID), letter.id);
        assert_eq!(header(headers::FORMAT), letter.format.as_str());
        assert!(!header(headers::DETAIL).is_empty());
        assert_eq!(m.payload, letter.raw, "the raw bytes travel as the payload");
        // Keyed by the letter's id, so a repeat publication is the same letter.
        assert_eq!(m.key.as_deref(), Some(letter.id.as_str()));
        let origin_key = m.headers.iter().find(|(k, _)| k == headers::ORIGIN_KEY);
        assert_eq!(origin_key.map(|(_, v)| String::from_utf8(v.clone()).unwrap()), letter.key);
    }
}
