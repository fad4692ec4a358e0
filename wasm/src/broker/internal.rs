//! A client inside the broker: an engine [`Client`] on a connection of the
//! in-tab broker with no transport, its bytes handed over in memory. The
//! broker's own client (the `message` event, `broker.publish`) and the
//! local side of each bridge are such clients. The driver feeds it what
//! the broker transmits to its connection ([`Internal::receive`]) and
//! hands its output to the broker ([`Internal::hand_to`]); its login is
//! accepted without a password, as user `$in-tab`.

use bytes::{Bytes, BytesMut};
use ringmq_engine::broker::{Broker, ConnId};
use ringmq_engine::client::{Client, ClientOptions};
use ringmq_engine::codec::Protocol;
use wasm_bindgen::JsValue;

use crate::js;

/// User name of every internal client (never checked against `users`;
/// ACL rules for `user $in-tab` apply to it).
pub const INTERNAL_USERNAME: &str = "$in-tab";

pub struct Internal {
    pub conn: ConnId,
    pub client: Client,
    read: BytesMut,
}

impl Internal {
    /// Accepts a connection for a v5 client `client_id` (clean start, no
    /// keep-alive) and queues its CONNECT. `manual_acks`: the messages the
    /// broker delivers to it are acknowledged by `Client::acknowledge` (a
    /// bridge, once the external broker took them).
    pub fn start(
        broker: &mut Broker,
        client_id: String,
        manual_acks: bool,
    ) -> Result<Internal, JsValue> {
        let now = js::now_ms();
        let conn = broker
            .accept(now)
            .ok_or_else(|| js::error("the broker is full or closed", None))?;
        let mut options = ClientOptions::new(Protocol::V5, Bytes::from(client_id.into_bytes()));
        options.keep_alive_s = 0;
        options.username = Some(Bytes::from_static(INTERNAL_USERNAME.as_bytes()));
        options.manual_acks = manual_acks;
        let mut client = Client::new(options);
        if let Err(e) = client.connect(now) {
            broker.handle_closed(conn, now);
            return Err(js::error(&format!("internal client: {e}"), None));
        }
        Ok(Internal {
            conn,
            client,
            read: BytesMut::new(),
        })
    }

    /// Hands the client's outgoing bytes to the broker; true if there were any.
    pub fn hand_to(&mut self, broker: &mut Broker) -> bool {
        let out = self.client.outgoing();
        if out.is_empty() {
            return false;
        }
        let mut buf = out.split();
        broker.handle_read(self.conn, &mut buf, js::now_ms());
        true
    }

    /// Bytes the broker transmitted to this connection.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.read.extend_from_slice(bytes);
        // A protocol error ends the client (reported by its events).
        if self
            .client
            .handle_read(&mut self.read, js::now_ms())
            .is_err()
        {
            self.read.clear();
        }
    }
}
