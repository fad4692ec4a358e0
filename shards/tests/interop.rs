//! Interop tests: the real binary with `--shards 2` against rumqttc, a
//! third-party client, in MQTT 3.1.1 and 5.0. Client ids are chosen with
//! `owner_shard` so that sessions live on the shard each test needs.
//! Every test body runs under a timeout ([`TEST_TIMEOUT`]).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use ringmq_tests::{binary, client_id_on_shard, Broker};
use tokio::sync::mpsc;
use tokio::time::timeout;

const SHARDS: u16 = 2;
const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn run(body: impl Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    rt.block_on(async {
        if timeout(TEST_TIMEOUT, body).await.is_err() {
            panic!("test did not finish within {TEST_TIMEOUT:?}");
        }
    });
}

/// MQTT 3.1.1 client on rumqttc.
mod v4 {
    use super::*;
    use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS};

    pub struct Client {
        pub client: AsyncClient,
        pub publishes: mpsc::UnboundedReceiver<Publish>,
        pub session_present: bool,
        pub ended: mpsc::UnboundedReceiver<String>,
        acks: mpsc::UnboundedReceiver<Ack>,
        task: tokio::task::JoinHandle<()>,
    }

    pub fn options(id: &str, port: u16) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub fn will(topic: &str, payload: &'static [u8]) -> LastWill {
        LastWill::new(topic, payload, QoS::AtLeastOnce, false)
    }

    /// Connects and waits for CONNACK; the event loop then runs in a task
    /// that forwards PUBLISHes and stops at the first error.
    pub async fn connect(options: MqttOptions) -> Client {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let session_present = loop {
            match timeout(RECV_TIMEOUT, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => break ack.session_present,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("connect: {e}"),
                Err(_) => panic!("no CONNACK within {RECV_TIMEOUT:?}"),
            }
        };
        let (tx, publishes) = mpsc::unbounded_channel();
        let (end_tx, ended) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(Ack::Sub);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = ack_tx.send(Ack::Pub);
                    }
                    Ok(Event::Incoming(Packet::Disconnect)) => {
                        let _ = end_tx.send("disconnect".to_string());
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = end_tx.send(e.to_string());
                        return;
                    }
                }
            }
        });
        Client {
            client,
            publishes,
            session_present,
            ended,
            acks,
            task,
        }
    }

    impl Client {
        pub async fn recv(&mut self) -> Publish {
            match timeout(RECV_TIMEOUT, self.publishes.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => panic!("event loop ended"),
                Err(_) => panic!("no PUBLISH within {RECV_TIMEOUT:?}"),
            }
        }

        pub async fn expect_none(&mut self, wait: Duration) {
            if let Ok(Some(p)) = timeout(wait, self.publishes.recv()).await {
                panic!("unexpected PUBLISH on {:?}", p.topic);
            }
        }

        /// Drops the connection without DISCONNECT (a "crash": the will
        /// fires).
        pub fn kill(self) {
            self.task.abort();
        }

        /// Subscribes and waits for the SUBACK: from then on a message
        /// published on any shard reaches this client.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client
                .subscribe(filter, qos)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            wait_ack(&mut self.acks, Ack::Sub).await;
        }

        pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.client
                .publish(topic, qos, retain, payload.to_vec())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }

        /// Publishes at QoS 1 and waits for the PUBACK (a retained message
        /// is then on every shard).
        pub async fn publish_acked(&mut self, topic: &str, retain: bool, payload: &[u8]) {
            self.publish(topic, QoS::AtLeastOnce, retain, payload).await;
            wait_ack(&mut self.acks, Ack::Pub).await;
        }

        pub async fn disconnect(self) {
            let _ = self.client.disconnect().await;
            let mut ended = self.ended;
            let _ = timeout(RECV_TIMEOUT, ended.recv()).await;
            self.task.abort();
        }
    }
}

/// MQTT 5.0 client on rumqttc.
mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub struct Client {
        pub client: AsyncClient,
        pub publishes: mpsc::UnboundedReceiver<Publish>,
        pub ended: mpsc::UnboundedReceiver<String>,
        acks: mpsc::UnboundedReceiver<Ack>,
        task: tokio::task::JoinHandle<()>,
    }

    pub fn options(id: &str, port: u16) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub async fn connect(options: MqttOptions) -> Client {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        loop {
            match timeout(RECV_TIMEOUT, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("connect: {e}"),
                Err(_) => panic!("no CONNACK within {RECV_TIMEOUT:?}"),
            }
        }
        let (tx, publishes) = mpsc::unbounded_channel();
        let (end_tx, ended) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(Ack::Sub);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = ack_tx.send(Ack::Pub);
                    }
                    Ok(Event::Incoming(Packet::Disconnect(d))) => {
                        let _ = end_tx.send(format!("disconnect {:?}", d.reason_code));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = end_tx.send(e.to_string());
                        return;
                    }
                }
            }
        });
        Client {
            client,
            publishes,
            ended,
            acks,
            task,
        }
    }

    impl Client {
        pub async fn recv(&mut self) -> Publish {
            match timeout(RECV_TIMEOUT, self.publishes.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => panic!("event loop ended"),
                Err(_) => panic!("no PUBLISH within {RECV_TIMEOUT:?}"),
            }
        }

        /// Subscribes and waits for the SUBACK: from then on a message
        /// published on any shard reaches this client.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client
                .subscribe(filter, qos)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            wait_ack(&mut self.acks, Ack::Sub).await;
        }

        pub async fn publish(&self, topic: &str, qos: QoS, payload: &[u8]) {
            self.client
                .publish(topic, qos, false, payload.to_vec())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }

        pub async fn ended(&mut self) -> String {
            match timeout(RECV_TIMEOUT, self.ended.recv()).await {
                Ok(Some(why)) => why,
                _ => panic!("connection still up after {RECV_TIMEOUT:?}"),
            }
        }

        pub fn abort(self) {
            self.task.abort();
        }
    }
}

/// An acknowledgement the event loop task saw (rumqttc's `subscribe` and
/// `publish` only queue the request).
#[derive(Debug, PartialEq)]
enum Ack {
    Sub,
    Pub,
}

/// Waits for the next acknowledgement of kind `want` (earlier ones of the
/// other kind are dropped). The broker sends SUBACK, and a retained QoS 1
/// message's PUBACK, only once every shard applied the change (its
/// cross-shard barrier), so waiting for them replaces guessing a delay.
async fn wait_ack(acks: &mut mpsc::UnboundedReceiver<Ack>, want: Ack) {
    loop {
        match timeout(RECV_TIMEOUT, acks.recv()).await {
            Ok(Some(got)) if got == want => return,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event loop ended before {want:?}ACK"),
            Err(_) => panic!("no {want:?}ACK within {RECV_TIMEOUT:?}"),
        }
    }
}

#[test]
fn v311_qos_0_1_2_across_shards() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        use rumqttc::QoS;
        let mut sub = v4::connect(v4::options(&client_id_on_shard("q-sub", 0, SHARDS), port)).await;
        sub.subscribe("q/#", QoS::ExactlyOnce).await;
        let publisher =
            v4::connect(v4::options(&client_id_on_shard("q-pub", 1, SHARDS), port)).await;
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let payload = format!("m{i}");
            publisher
                .publish(&format!("q/{i}"), qos, false, payload.as_bytes())
                .await;
            let got = sub.recv().await;
            assert_eq!(got.topic, format!("q/{i}"));
            assert_eq!(&got.payload[..], payload.as_bytes());
            assert_eq!(got.qos, qos, "granted QoS 2, so the publish QoS is kept");
        }
        publisher.disconnect().await;
        sub.disconnect().await;
    });
}

#[test]
fn v5_qos_0_1_2_across_shards() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        use rumqttc::v5::mqttbytes::QoS;
        let mut sub =
            v5::connect(v5::options(&client_id_on_shard("q5-sub", 1, SHARDS), port)).await;
        sub.subscribe("q5/+", QoS::ExactlyOnce).await;
        let publisher =
            v5::connect(v5::options(&client_id_on_shard("q5-pub", 0, SHARDS), port)).await;
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let payload = format!("v5-{i}");
            publisher
                .publish(&format!("q5/{i}"), qos, payload.as_bytes())
                .await;
            let got = sub.recv().await;
            assert_eq!(&got.topic[..], format!("q5/{i}").as_bytes());
            assert_eq!(&got.payload[..], payload.as_bytes());
            assert_eq!(got.qos, qos);
        }
        publisher.abort();
        sub.abort();
    });
}

#[test]
fn v311_and_v5_clients_talk_to_each_other() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        let mut sub = v5::connect(v5::options("mixed-sub", port)).await;
        sub.subscribe("mixed", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await;
        let publisher = v4::connect(v4::options("mixed-pub", port)).await;
        publisher
            .publish("mixed", rumqttc::QoS::AtLeastOnce, false, b"hi")
            .await;
        assert_eq!(&sub.recv().await.payload[..], b"hi");
        publisher.disconnect().await;
        sub.abort();
    });
}

#[test]
fn retained_message_is_delivered_on_subscribe() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        use rumqttc::QoS;
        let mut publisher =
            v4::connect(v4::options(&client_id_on_shard("ret-pub", 0, SHARDS), port)).await;
        publisher.publish_acked("ret/a", true, b"last value").await;
        publisher.disconnect().await;
        let mut sub =
            v4::connect(v4::options(&client_id_on_shard("ret-sub", 1, SHARDS), port)).await;
        sub.subscribe("ret/+", QoS::AtLeastOnce).await;
        let got = sub.recv().await;
        assert_eq!(got.topic, "ret/a");
        assert_eq!(&got.payload[..], b"last value");
        assert!(
            got.retain,
            "retained flag set on delivery to a new subscription"
        );
        sub.disconnect().await;
    });
}

#[test]
fn will_is_published_when_a_client_vanishes() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        use rumqttc::QoS;
        let mut watcher = v4::connect(v4::options(
            &client_id_on_shard("will-watch", 0, SHARDS),
            port,
        ))
        .await;
        watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
        let mut o = v4::options(&client_id_on_shard("will-dies", 1, SHARDS), port);
        o.set_last_will(v4::will("wills/dies", b"gone"));
        let dying = v4::connect(o).await;
        dying.kill();
        let got = watcher.recv().await;
        assert_eq!(got.topic, "wills/dies");
        assert_eq!(&got.payload[..], b"gone");
        // A clean DISCONNECT discards the will (MQTT-3.14.4-3).
        let mut o = v4::options("will-polite", port);
        o.set_last_will(v4::will("wills/polite", b"never"));
        v4::connect(o).await.disconnect().await;
        watcher.expect_none(Duration::from_millis(500)).await;
        watcher.disconnect().await;
    });
}

#[test]
fn persistent_session_resumes_with_queued_qos1_messages() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        use rumqttc::QoS;
        let id = client_id_on_shard("persist", 1, SHARDS);
        let mut o = v4::options(&id, port);
        o.set_clean_session(false);
        let mut first = v4::connect(o.clone()).await;
        assert!(!first.session_present);
        first.subscribe("persist/t", QoS::AtLeastOnce).await;
        first.disconnect().await;
        let mut publisher = v4::connect(v4::options(
            &client_id_on_shard("persist-pub", 0, SHARDS),
            port,
        ))
        .await;
        publisher
            .publish_acked("persist/t", false, b"while away")
            .await;
        publisher.disconnect().await;
        let mut again = v4::connect(o).await;
        assert!(again.session_present, "session resumed");
        let got = again.recv().await;
        assert_eq!(&got.payload[..], b"while away");
        again.disconnect().await;
    });
}

#[test]
fn takeover_disconnects_the_old_connection() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        // Several rounds: new connections land on either shard (the kernel
        // picks) and are routed to the owner, where the takeover happens.
        for owner in 0..SHARDS {
            let id = client_id_on_shard("takeover", owner, SHARDS);
            let mut old = v5::connect(v5::options(&id, port)).await;
            let mut new = v5::connect(v5::options(&id, port)).await;
            // The broker sends DISCONNECT 0x8E before closing (checked byte
            // by byte in raw.rs); rumqttc 0.25 may report only the close.
            let why = old.ended().await;
            assert!(
                why.contains("SessionTakenOver") || why.contains("closed by peer"),
                "old connection ended by: {why}"
            );
            new.subscribe("takeover/t", rumqttc::v5::mqttbytes::QoS::AtMostOnce)
                .await;
            let p = v4::connect(v4::options(&format!("takeover-pub-{owner}"), port)).await;
            p.publish(
                "takeover/t",
                rumqttc::QoS::AtMostOnce,
                false,
                b"to the new one",
            )
            .await;
            assert_eq!(&new.recv().await.payload[..], b"to the new one");
            p.disconnect().await;
            new.abort();
        }
    });
}

#[test]
fn shared_subscription_delivers_each_message_once_across_shards() {
    let broker = Broker::start(&bin(), &[]);
    let port = broker.port();
    run(async move {
        use rumqttc::v5::mqttbytes::QoS;
        const MESSAGES: usize = 40;
        let mut a = v5::connect(v5::options(&client_id_on_shard("share-a", 0, SHARDS), port)).await;
        let mut b = v5::connect(v5::options(&client_id_on_shard("share-b", 1, SHARDS), port)).await;
        a.subscribe("$share/g/jobs/#", QoS::AtLeastOnce).await;
        b.subscribe("$share/g/jobs/#", QoS::AtLeastOnce).await;
        let publisher = v5::connect(v5::options("share-pub", port)).await;
        for i in 0..MESSAGES {
            publisher
                .publish("jobs/x", QoS::AtLeastOnce, format!("{i}").as_bytes())
                .await;
        }
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        let (mut from_a, mut from_b) = (0, 0);
        while seen.len() < MESSAGES && tokio::time::Instant::now() < deadline {
            tokio::select! {
                Some(p) = a.publishes.recv() => { from_a += 1; seen.push(p.payload) }
                Some(p) = b.publishes.recv() => { from_b += 1; seen.push(p.payload) }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let mut numbers: Vec<usize> = seen
            .iter()
            .map(|p| String::from_utf8_lossy(p).parse().unwrap_or(usize::MAX))
            .collect();
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (0..MESSAGES).collect::<Vec<_>>(),
            "each message exactly once (a: {from_a}, b: {from_b})"
        );
        // Nothing more arrives (no duplicate on the other shard).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(a.publishes.try_recv().is_err() && b.publishes.try_recv().is_err());
        publisher.abort();
        a.abort();
        b.abort();
    });
}

/// Rings of 2 slots and an overflow of 4 messages: cross-shard QoS 1 and
/// QoS 0 traffic must hit the full-ring policy (queue, then pause the
/// publishing connection) and still arrive complete and in order at a
/// subscriber that keeps up.
#[test]
fn tiny_rings_apply_backpressure_without_losing_qos1() {
    let dir = std::env::temp_dir().join(format!("ringmq-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let cfg = dir.join("tiny-rings.toml");
    std::fs::write(
        &cfg,
        "[runtime]\nring_capacity_slots = 2\nring_overflow_max_messages = 4\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = cfg.display().to_string();
    let broker = Broker::start(&bin(), &["--config", &cfg]);
    let port = broker.port();
    run(async move {
        use rumqttc::QoS;
        const MESSAGES: usize = 1000;
        let mut sub =
            v4::connect(v4::options(&client_id_on_shard("bp-sub", 0, SHARDS), port)).await;
        sub.subscribe("bp/#", QoS::AtLeastOnce).await;
        let publisher =
            v4::connect(v4::options(&client_id_on_shard("bp-pub", 1, SHARDS), port)).await;
        let sender = publisher.client.clone();
        let flood = tokio::spawn(async move {
            for i in 0..MESSAGES {
                sender
                    .publish("bp/q1", QoS::AtLeastOnce, false, i.to_string().into_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        });
        for i in 0..MESSAGES {
            let got = sub.recv().await;
            assert_eq!(
                String::from_utf8_lossy(&got.payload),
                i.to_string(),
                "in order, none lost"
            );
        }
        flood.await.unwrap_or_else(|e| panic!("{e}"));
        // A QoS 0 flood is throttled at the full ring, not dropped.
        for i in 0..5000 {
            publisher
                .publish("bp/q0", QoS::AtMostOnce, false, i.to_string().as_bytes())
                .await;
        }
        publisher
            .publish("bp/last", QoS::AtLeastOnce, false, b"end")
            .await;
        let mut next = 0;
        loop {
            let got = sub.recv().await;
            if got.topic == "bp/last" {
                break;
            }
            assert_eq!(
                String::from_utf8_lossy(&got.payload),
                next.to_string(),
                "QoS 0 in order, none lost"
            );
            next += 1;
        }
        assert_eq!(next, 5000);
        publisher.disconnect().await;
        sub.disconnect().await;
    });
}
