//! Idempotent producers: retried batches are acknowledged with their original offset
//! and written once, gaps and stale epochs are refused, and the state survives a
//! restart. Raw requests shape the retries exactly; librdkafka checks the happy path.

mod common;

use std::time::Duration;

use common::idempotent::{batch, init_producer_id, produce};
use common::*;
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_are_written_once_and_gaps_and_stale_epochs_refused() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "idem", 1, &[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let pid = init_producer_id(&mut raw);
    assert_ne!(
        pid,
        init_producer_id(&mut raw),
        "every InitProducerId gets a new id"
    );

    assert_eq!(produce(&mut raw, "idem", batch(pid, 0, 0, 3)), (0, 0));
    assert_eq!(produce(&mut raw, "idem", batch(pid, 0, 3, 2)), (0, 3));
    // A retry of the first batch: acknowledged with its original offset, not rewritten.
    assert_eq!(produce(&mut raw, "idem", batch(pid, 0, 0, 3)), (0, 0));
    assert_eq!(produce(&mut raw, "idem", batch(pid, 0, 3, 2)), (0, 3));
    // A gap in the sequence.
    assert_eq!(
        produce(&mut raw, "idem", batch(pid, 0, 9, 1)).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // A bumped epoch restarts the sequence; the old epoch is then fenced.
    assert_eq!(produce(&mut raw, "idem", batch(pid, 1, 0, 1)), (0, 5));
    assert_eq!(
        produce(&mut raw, "idem", batch(pid, 0, 5, 1)).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );

    let got = consume_all(&b.bootstrap, "idem", 1, T);
    let values: Vec<String> = got
        .iter()
        .map(|g| String::from_utf8(g.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        values,
        ["seq-0", "seq-1", "seq-2", "seq-3", "seq-4", "seq-0"],
        "duplicates were not written"
    );

    // Producer state survives a clean restart...
    let b = b.restart(&[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    assert_eq!(
        produce(&mut raw, "idem", batch(pid, 1, 0, 1)),
        (0, 5),
        "retry after restart is still a duplicate"
    );
    assert_eq!(produce(&mut raw, "idem", batch(pid, 1, 1, 1)), (0, 6));
    let fresh = init_producer_id(&mut raw);
    assert!(
        fresh > pid + 1,
        "producer ids are never reused after a restart ({fresh} vs {pid})"
    );
    drop(raw);
    // ...and an unclean one (no shutdown, rebuilt from the log).
    let dir = {
        let mut b = b;
        let running = b.running.take().unwrap();
        // Simulate a crash: drop the handle without a clean shutdown of the logs.
        std::fs::remove_file(b.log_dir().join(".kafka_cleanshutdown")).ok();
        running.shutdown().await;
        std::fs::remove_file(b.log_dir().join(".kafka_cleanshutdown")).unwrap();
        std::fs::remove_file(b.log_dir().join("idem-0").join("producer-state.json")).unwrap();
        b.dir
    };
    let b = TestBroker::start_in(dir, &[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    assert_eq!(
        produce(&mut raw, "idem", batch(pid, 1, 1, 1)),
        (0, 6),
        "state rebuilt from the log"
    );
    assert_eq!(produce(&mut raw, "idem", batch(pid, 1, 3, 1)).0, 45);
    // A producer this partition has no state for (its records may all have been
    // deleted) is accepted at any sequence, as Kafka does, and held to it from then on.
    let stranger = pid + 500;
    assert_eq!(produce(&mut raw, "idem", batch(stranger, 0, 7, 1)), (0, 7));
    assert_eq!(produce(&mut raw, "idem", batch(stranger, 0, 7, 1)), (0, 7));
    assert_eq!(produce(&mut raw, "idem", batch(stranger, 0, 9, 1)).0, 45);
    assert_eq!(produce(&mut raw, "idem", batch(stranger, 0, 8, 1)), (0, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_idempotent_producer_delivers_exactly_once() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "idem-rd", 2, &[]).await;
    let p = producer(
        &b.bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
        ],
    );
    let mut futures = Vec::new();
    for i in 0..2000 {
        let v = format!("{i}");
        futures.push(
            p.send_result(FutureRecord::to("idem-rd").key(&v).payload(&v))
                .unwrap(),
        );
    }
    for f in futures {
        f.await.unwrap().expect("delivered");
    }
    let got = consume_all(&b.bootstrap, "idem-rd", 2, T);
    assert_eq!(got.len(), 2000);
    let mut values: Vec<u32> = got
        .iter()
        .map(|g| {
            String::from_utf8(g.value.clone().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 2000);
}

/// Transactions are not implemented yet: a transactional producer must be told the
/// coordinator is not available (retriable, as Kafka answers while it cannot place its
/// transaction coordinator), never that it lacks an ACL that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_producer_is_not_told_it_lacks_authorization() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, Producer};
    let b = TestBroker::start().await;
    let bootstrap = b.bootstrap.clone();
    let error = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = client_config(&bootstrap)
            .set("transactional.id", "strata-txn-test")
            .create()
            .expect("producer");
        producer
            .init_transactions(Duration::from_secs(5))
            .expect_err("transactions are not supported yet")
    })
    .await
    .unwrap();
    let code = match &error {
        KafkaError::Transaction(e) => e.code(),
        other => other.rdkafka_error_code().expect("an rdkafka error code"),
    };
    assert_ne!(
        code,
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        "{error}"
    );
    assert_ne!(
        code,
        RDKafkaErrorCode::ClusterAuthorizationFailed,
        "{error}"
    );
    // Idempotent producers on the same broker are unaffected.
    let p = producer(&b.bootstrap, &[("enable.idempotence", "true")]);
    create_topic(&b.bootstrap, "after-txn", 1, &[]).await;
    let delivered = p
        .send(FutureRecord::<(), _>::to("after-txn").payload("x"), T)
        .await
        .expect("idempotent produce");
    assert_eq!((delivered.partition, delivered.offset), (0, 0));
}
