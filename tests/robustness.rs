//! Bad input closes only the offending connection (or gets Kafka's error answer), is
//! logged, and never stops the broker from serving the next client.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(20);

/// A real client can still produce and consume after whatever happened before.
async fn still_serving(bootstrap: &str, topic: &str) {
    let p = producer(bootstrap, &[]);
    let d = p
        .send(FutureRecord::<(), _>::to(topic).payload("after"), T)
        .await
        .expect("broker still serves producers");
    let got = consume_all(bootstrap, topic, 1, T);
    assert_eq!(got.last().unwrap().offset, d.offset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_only_that_connection() {
    let b = TestBroker::start().await;
    let mut bystander = RawClient::connect(&b.bootstrap);
    let mut raw = RawClient::connect(&b.bootstrap);
    // A plausible length followed by noise: header decoding fails.
    let mut junk = vec![0u8, 0, 0, 40];
    junk.extend((0..40u8).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    raw.send_bytes(&junk);
    assert!(raw.is_closed(), "garbage frame closes the connection");
    // Random frames with valid API keys but garbage bodies must not crash anything.
    for api in [0i16, 1, 3, 19, 32] {
        let mut raw = RawClient::connect(&b.bootstrap);
        let mut frame = Vec::new();
        frame.extend_from_slice(&api.to_be_bytes());
        frame.extend_from_slice(&1i16.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        // Array counts of 2^31-1 with no elements behind them.
        frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0, 0]);
        let mut msg = (frame.len() as i32).to_be_bytes().to_vec();
        msg.extend(frame);
        raw.send_bytes(&msg);
        assert!(
            raw.is_closed(),
            "undecodable api {api} body closes the connection"
        );
    }
    // The other connection is untouched.
    let resp = bystander.call(
        ApiKey::Metadata,
        9,
        RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![]))),
    );
    assert!(matches!(resp, ResponseKind::Metadata(_)));
    create_topic(&b.bootstrap, "after-garbage", 1, &[]).await;
    still_serving(&b.bootstrap, "after-garbage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_gigabyte_length_prefix_is_refused_before_allocating() {
    let b = TestBroker::start().await;
    for prefix in [i32::MAX, -5, 200 * 1024 * 1024] {
        let mut raw = RawClient::connect(&b.bootstrap);
        raw.send_bytes(&prefix.to_be_bytes());
        assert!(raw.is_closed(), "length {prefix} closes the connection");
    }
    create_topic(&b.bootstrap, "after-huge", 1, &[]).await;
    still_serving(&b.bootstrap, "after-huge").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key_and_unsupported_version_close_the_connection() {
    let b = TestBroker::start().await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let mut frame = Vec::new();
    frame.extend_from_slice(&9999i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    let mut msg = (frame.len() as i32).to_be_bytes().to_vec();
    msg.extend(frame);
    raw.send_bytes(&msg);
    assert!(raw.is_closed(), "unknown API key closes the connection");
    // Produce v2 was removed by Kafka 4 and is not advertised: closed.
    let mut raw = RawClient::connect(&b.bootstrap);
    let mut frame = Vec::new();
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&2i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    let mut msg = (frame.len() as i32).to_be_bytes().to_vec();
    msg.extend(frame);
    raw.send_bytes(&msg);
    assert!(raw.is_closed(), "unsupported version closes the connection");
    create_topic(&b.bootstrap, "after-unknown", 1, &[]).await;
    still_serving(&b.bootstrap, "after-unknown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_of_an_unknown_version_gets_kip_511_answer() {
    let b = TestBroker::start().await;
    let mut raw = RawClient::connect(&b.bootstrap);
    // ApiVersions v99: the header is v2 but the body is unknown; the broker answers
    // with error 35 and its own range, v0-encoded, and keeps the connection.
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&42i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.push(0);
    frame.extend_from_slice(&[1, 2, 3]);
    let mut msg = (frame.len() as i32).to_be_bytes().to_vec();
    msg.extend(frame);
    raw.send_bytes(&msg);
    let mut resp = raw.read_frame().expect("an answer, not a closed socket");
    let correlation = read_i32(&mut resp);
    assert_eq!(correlation, 42);
    let body = kafka_protocol::messages::ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35);
    let produce = body
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce listed");
    assert_eq!((produce.min_version, produce.max_version), (3, 11));
    // Same connection, a supported version now works.
    let resp = raw.call(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("raw"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
    );
    let ResponseKind::ApiVersions(v) = resp else {
        panic!("wrong response")
    };
    assert_eq!(v.error_code, 0);
    // Exactly the advertised table: every entry is one we implement.
    let keys: Vec<i16> = v.api_keys.iter().map(|k| k.api_key).collect();
    for must in [
        0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 32, 33, 37, 42, 44, 47,
        60, 75,
    ] {
        assert!(keys.contains(&must), "api {must} advertised");
    }
    for absent in [4, 24, 25, 26, 57] {
        assert!(
            !keys.contains(&absent),
            "api {absent} is not implemented and must not be advertised"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let b = TestBroker::start().await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let mut sent = Vec::new();
    for i in 0..50 {
        let (api, version, body) = if i % 2 == 0 {
            (
                ApiKey::Metadata,
                12,
                RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
            )
        } else {
            (
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(ApiVersionsRequest::default()),
            )
        };
        sent.push(raw.send(api, version, &body));
    }
    for expected in sent {
        let mut frame = raw.read_frame().unwrap();
        assert_eq!(
            read_i32(&mut frame),
            expected,
            "responses come back in request order"
        );
    }
}
