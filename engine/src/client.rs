//! Client-side MQTT state machine (sans-IO). (STUB: being written.)
