//! TypeScript definitions of the option and event objects, appended to
//! the generated `ringmq_wasm.d.ts`; the methods name them through
//! `unchecked_param_type` / `unchecked_return_type`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** MQTT 5 PUBLISH properties (sent and received). */
export interface PublishProperties {
  responseTopic?: string;
  correlationData?: Uint8Array | string;
  /** [[name, value], ...] in wire order (received), or an object (sent). */
  userProperties?: [string, string][] | Record<string, string>;
  contentType?: string;
  /** Seconds. */
  messageExpiryInterval?: number;
  payloadFormatIndicator?: 0 | 1;
  /** Received only: the identifiers of the matching subscriptions. */
  subscriptionIdentifiers?: number[];
}

export type Payload = string | Uint8Array | ArrayBuffer;

/** Where `connect` goes. A function is called for each attempt (reconnection over ports). */
export type ConnectTarget = string | MessagePort | (() => MessagePort) | { broadcastChannel: string };

export interface WillOptions {
  topic: string;
  payload?: Payload;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  properties?: PublishProperties & { willDelayInterval?: number };
}

export interface ReconnectOptions {
  /** Delay before the first attempt, ms (500); doubles per attempt. */
  initialDelayMs?: number;
  /** Largest delay, ms (30000). */
  maxDelayMs?: number;
  /** Attempts before giving up; 0 = no limit (0). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** 5 (default), 4 (3.1.1) or 3 (3.1). */
  protocolVersion?: 3 | 4 | 5;
  clientId?: string;
  cleanStart?: boolean;
  /** Seconds (60); 0 = no PINGREQ. */
  keepAlive?: number;
  /** Seconds (v5). */
  sessionExpiryInterval?: number;
  username?: string;
  password?: Payload;
  will?: WillOptions;
  receiveMaximum?: number;
  inflightMax?: number;
  maximumPacketSize?: number;
  topicAliasMaximum?: number;
  connectTimeoutMs?: number;
  userProperties?: [string, string][] | Record<string, string>;
  /** false: never; true / absent: the defaults. */
  reconnect?: boolean | ReconnectOptions;
  /** QoS 1/2 publishes waiting for the window or a reconnection (10000). */
  queueMaxMessages?: number;
}

export interface ConnectInfo {
  sessionPresent: boolean;
  reconnected: boolean;
  assignedClientIdentifier?: string;
}

export interface DisconnectInfo { reason: string; reasonCode?: number; }
export interface ReconnectingInfo { attempt: number; delayMs: number; }

export interface PublishOptions {
  qos?: 0 | 1 | 2;
  retain?: boolean;
  properties?: PublishProperties;
}

export interface SubscribeOptions {
  qos?: 0 | 1 | 2;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  /** 0: send retained at subscribe, 1: only if new, 2: never. */
  retainHandling?: 0 | 1 | 2;
  subscriptionIdentifier?: number;
  userProperties?: [string, string][] | Record<string, string>;
}

export interface Packet { qos: 0 | 1 | 2; retain: boolean; dup: boolean; properties: PublishProperties; }
export interface Message { topic: string; payload: Uint8Array; packet: Packet; }
export type MessageHandler = (topic: string, payload: Uint8Array, packet: Packet) => void;

export interface RequestOptions {
  qos?: 0 | 1 | 2;
  /** ms (10000). */
  timeoutMs?: number;
  responseTopic?: string;
}

export interface BrokerOptions {
  maxConnections?: number;
  maxPacketSize?: number;
  receiveMaximum?: number;
  inflightMax?: number;
  sessionQueueMaxMessages?: number;
  outgoingBufferMaxBytes?: number;
  subscriptionsPerSessionMax?: number;
  retainedMessagesMax?: number;
  retainedBytesMax?: number;
  topicAliasMax?: number;
  keepAliveMax?: number;
  sessionExpiryMax?: number;
  clientIdMaxBytes?: number;
  connectTimeoutMs?: number;
  /** `$SYS` interval, s (10); 0 = off. */
  sysInterval?: number;
  sharedPolicy?: 'round_robin' | 'random' | 'sticky' | 'hash_clientid' | 'hash_topic' | 'least_inflight';
  allowAnonymous?: boolean;
  /** Plain passwords: { name: password }. */
  users?: Record<string, string>;
  /** Password file text (argon2id lines, as `ringmq passwd` writes). */
  passwordFile?: string;
  /** ACL file text (docs/security.md). */
  acl?: string;
}

export interface ClientInfo {
  clientId: string;
  username?: string;
  protocolVersion: number;
  keepAlive: number;
  cleanStart: boolean;
  sessionPresent: boolean;
}

/** One topic mapping of a bridge (Mosquitto's `topic pattern direction qos local-prefix remote-prefix`). */
export interface BridgeTopic {
  /** Topic filter, without the prefixes (`+` and `#` allowed; not `$share/`). */
  pattern: string;
  /** 'out' (default): in-tab -> external; 'in': external -> in-tab; 'both' (MQTT 5 only). */
  direction?: 'in' | 'out' | 'both';
  /** QoS of the bridge's subscriptions (0): the largest QoS forwarded. */
  qos?: 0 | 1 | 2;
  /** Prefix of the topics in the in-tab broker (''). */
  localPrefix?: string;
  /** Prefix of the topics on the external broker (''). */
  remotePrefix?: string;
}

/** `addBridge` options: those of `connect` for the external connection, plus `url` and `topics`. */
export interface BridgeOptions extends ConnectOptions {
  /** ws:// or wss:// URL of the external broker. */
  url: string;
  /** 1 to 256 mappings. */
  topics: BridgeTopic[];
}

export interface BridgeStats {
  connected: boolean;
  /** External messages the in-tab broker accepted / could not publish. */
  forwardedIn: number; droppedIn: number;
  /** In-tab messages the external broker acknowledged / refused (reason >= 0x80). */
  forwardedOut: number; refusedOut: number;
  /** In-tab messages dropped: QoS 0 while disconnected, queue full (queueMaxMessages), bridge closed. */
  droppedOut: number;
  /** Outbound QoS 1/2 messages waiting for the connection or their acknowledgement. */
  queued: number;
}

export interface BrokerStats {
  connections: number; sessions: number; retained: number;
  messagesReceived: number; messagesSent: number;
  droppedQueueFull: number; droppedExpired: number; droppedNotAuthorized: number;
  publishesNotAuthorized: number; protocolErrors: number; loginsRefused: number;
}
"#;
