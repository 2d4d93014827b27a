//! Time-based segment rolls by record time (KAFKA-4099), against the broker as a
//! process with librdkafka: a replay of month-old history makes as many segments as its
//! data time calls for, not one per batch; current data still rolls after `segment.ms`.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(30);
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn segment_files(partition_dir: &Path) -> usize {
    std::fs::read_dir(partition_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count()
}

/// Sends one record per batch (each awaited) with the given CreateTimes.
async fn produce_with_timestamps(bootstrap: &str, topic: &str, timestamps: &[i64]) {
    let p = producer(bootstrap, &[("linger.ms", "0")]);
    for (i, ts) in timestamps.iter().enumerate() {
        let value = format!("record-{i}");
        p.send(
            FutureRecord::<(), _>::to(topic)
                .payload(&value)
                .timestamp(*ts),
            T,
        )
        .await
        .expect("produce");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_history_rolls_by_record_time_and_current_data_by_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data, free_port(), &[]);
    let bootstrap = broker.bootstrap();

    // 300 batches, 40 days old, spanning 8 days of data time, under segment.ms = 7 days:
    // one roll when the data passes 7 days past the first batch, so exactly 2 segments.
    create_topic(
        &bootstrap,
        "replay",
        1,
        &[
            ("segment.ms", &(7 * DAY_MS).to_string()),
            ("retention.ms", "-1"),
        ],
    )
    .await;
    let start = now_ms() - 40 * DAY_MS;
    let history: Vec<i64> = (0..300).map(|i| start + i * (8 * DAY_MS) / 299).collect();
    produce_with_timestamps(&bootstrap, "replay", &history).await;
    assert_eq!(segment_files(&data.join("replay-0")), 2);
    let got = consume_all(&bootstrap, "replay", 1, T);
    assert_eq!(got.len(), 300, "every replayed record reads back");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.offset, i as i64);
        assert_eq!(g.value.as_deref(), Some(format!("record-{i}").as_bytes()));
        assert_eq!(g.timestamp, Some(history[i]));
    }

    // Current data, batches 3 s apart in record time under segment.ms = 2000: each
    // batch after the first starts a new segment.
    create_topic(&bootstrap, "current", 1, &[("segment.ms", "2000")]).await;
    let now = now_ms();
    produce_with_timestamps(&bootstrap, "current", &[now - 6_000, now - 3_000, now]).await;
    assert_eq!(segment_files(&data.join("current-0")), 3);
    assert_eq!(consume_all(&bootstrap, "current", 1, T).len(), 3);

    // The record-time roll point survives a restart (the first batch's timestamp is read
    // back from the segment): one more replayed batch a day later stays in segment 2.
    broker.kill9();
    let broker = BrokerProcess::start(&data, free_port(), &[]);
    produce_with_timestamps(&broker.bootstrap(), "replay", &[start + 8 * DAY_MS + 1]).await;
    assert_eq!(segment_files(&data.join("replay-0")), 2);
    assert_eq!(consume_all(&broker.bootstrap(), "replay", 1, T).len(), 301);
}
