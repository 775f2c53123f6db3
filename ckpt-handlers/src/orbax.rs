//! Orbax handler type strings (spec §1.5) that ckpt knows by name.

/// Type string of Orbax's `JsonCheckpointHandler`, recorded by [`crate::JsonHandler`] so that
/// Orbax restores ckpt's JSON items with no arguments (spec §1.5, §2.1).
pub const ORBAX_JSON_HANDLER: &str =
    "orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandler";

/// Type strings of Orbax's handlers whose items ckpt cannot read: `ArrayCheckpointHandler` (one
/// bare array, tensorstore format) and `ProtoCheckpointHandler` (a protobuf) (spec §1.5, §2.2).
/// Orbax's `StandardCheckpointHandler` and `PyTreeCheckpointHandler` items are read (and
/// written) by [`crate::StandardHandler`] and [`crate::PyTreeHandler`].
pub const ORBAX_TENSORSTORE_HANDLERS: [&str; 2] = [
    "orbax.checkpoint._src.handlers.array_checkpoint_handler.ArrayCheckpointHandler",
    "orbax.checkpoint._src.handlers.proto_checkpoint_handler.ProtoCheckpointHandler",
];

/// Whether `type_string` is one of [`ORBAX_TENSORSTORE_HANDLERS`] (Orbax's Array and Proto
/// handlers), whose items ckpt cannot restore.
pub fn is_orbax_tensorstore_handler(type_string: &str) -> bool {
    ORBAX_TENSORSTORE_HANDLERS.contains(&type_string)
}

/// The class name of a Python type string: the part after the last `.`
/// (`StandardCheckpointHandler`).
pub(crate) fn class_name(type_string: &str) -> &str {
    type_string.rsplit('.').next().unwrap_or(type_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_tensorstore_handlers() {
        for ts in ORBAX_TENSORSTORE_HANDLERS {
            assert!(is_orbax_tensorstore_handler(ts));
        }
        assert!(!is_orbax_tensorstore_handler(ORBAX_JSON_HANDLER));
        assert!(!is_orbax_tensorstore_handler("ckpt.tensors"));
        assert!(!is_orbax_tensorstore_handler("StandardCheckpointHandler"));
        assert_eq!(
            class_name(ORBAX_TENSORSTORE_HANDLERS[0]),
            "ArrayCheckpointHandler"
        );
        assert_eq!(class_name("plain"), "plain");
    }
}
