//! Finding the handler of an item: [`HandlerRegistry`], [`handler_for_type_string`],
//! [`default_handler_for`] (spec §6).

use crate::orbax::class_name;
use crate::{
    is_orbax_tensorstore_handler, BytesHandler, CheckpointHandler, JsonHandler, SaveItem,
    TensorHandler,
};
use ckpt_core::{Error, ErrorKind, Result};
use serde::de::value::MapDeserializer;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a type string did not give a handler.
enum LookupFailure {
    /// Orbax's tensorstore handler of this class name.
    OrbaxTensorstore(String),
    /// No linked handler is registered under the string.
    Unknown,
    /// A handler is registered under the string but cannot be built from `{"type": ...}` alone.
    NotConstructible(BuildError),
}

/// The error of building a handler from `{"type": <type string>}` alone: the deserializer error
/// of [`lookup`], so that typetag's "no handler has this tag" is told apart by its kind, not by
/// its message. typetag reports a tag nothing registered with
/// [`serde::de::Error::unknown_variant`], and nothing else in a one-key map can be an unknown
/// variant.
#[derive(Debug)]
enum BuildError {
    /// typetag found no handler registered under the tag.
    UnknownTag,
    /// Anything else (a field without a serde default, a tag two handlers claim, ...).
    Other(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::UnknownTag => f.write_str("no handler is registered under this tag"),
            BuildError::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for BuildError {}

impl serde::de::Error for BuildError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        BuildError::Other(msg.to_string())
    }

    fn unknown_variant(_variant: &str, _expected: &'static [&'static str]) -> Self {
        BuildError::UnknownTag
    }
}

fn lookup(type_string: &str) -> std::result::Result<Box<dyn CheckpointHandler>, LookupFailure> {
    // `{"type": type_string}`, deserialized with an error type of our own (see BuildError).
    let tagged = MapDeserializer::<_, BuildError>::new(std::iter::once(("type", type_string)));
    match Box::<dyn CheckpointHandler>::deserialize(tagged) {
        Ok(handler) => Ok(handler),
        Err(BuildError::UnknownTag) => {
            if is_orbax_tensorstore_handler(type_string) {
                Err(LookupFailure::OrbaxTensorstore(
                    class_name(type_string).to_string(),
                ))
            } else {
                Err(LookupFailure::Unknown)
            }
        }
        Err(e) => Err(LookupFailure::NotConstructible(e)),
    }
}

/// A default-constructed handler for type string `type_string` (the value recorded for an item in
/// `_CHECKPOINT_METADATA.item_handlers`), as Orbax's global handler type registry (spec §6.4).
///
/// Looks the string up among every `#[typetag::serde(name = ...)]` implementation of
/// [`CheckpointHandler`] linked into the program (deserializing `{"type": type_string}`), so
/// third-party handlers are found as soon as their crate is linked (`use their_crate as _;`).
/// A handler built this way has its fields' serde defaults (a [`JsonHandler`] writes `metadata`).
///
/// # Errors
/// - `Unsupported` for Orbax's Array and Proto handlers (see
///   [`crate::is_orbax_tensorstore_handler`]), unless a linked handler claims that string: the
///   message says the data was written by Orbax's `<Class>` (tensorstore format), which ckpt cannot
///   read;
/// - `Unsupported` naming the string when no linked handler is registered under it;
/// - `Handler` when a handler is registered under it but cannot be built from its type string alone
///   (it has fields without serde defaults).
pub fn handler_for_type_string(type_string: &str) -> Result<Box<dyn CheckpointHandler>> {
    lookup(type_string).map_err(|f| match f {
        LookupFailure::OrbaxTensorstore(class) => Error::new(
            ErrorKind::Unsupported,
            format!(
                "handler {type_string:?}: data written by Orbax's {class} (tensorstore format), which ckpt cannot read"
            ),
        ),
        LookupFailure::Unknown => Error::new(
            ErrorKind::Unsupported,
            format!(
                "no handler is registered for type string {type_string:?}: link the crate that defines it \
                 (`use that_crate as _;`) or register a handler for the item"
            ),
        ),
        LookupFailure::NotConstructible(e) => Error::new(
            ErrorKind::Handler,
            format!("handler {type_string:?} cannot be built from its type string alone"),
        )
        .with_source(e),
    })
}

/// The built-in handler that saves `item` when no handler is registered for it:
/// `Json`/`JsonValue` → [`JsonHandler::default`] (file `metadata`, Orbax's format), `Tensors` →
/// [`TensorHandler`], `Bytes` → [`BytesHandler`], `PyTree` → [`crate::StandardHandler`] (OCDBT,
/// as Orbax's `StandardSave`) (Orbax's global arg-type registry, spec §6.1).
///
/// # Errors
/// `InvalidArgument` for `Custom` items, which need a handler registered for their item name.
pub fn default_handler_for(item: &SaveItem<'_>) -> Result<Arc<dyn CheckpointHandler>> {
    Ok(match item {
        SaveItem::Json(_) | SaveItem::JsonValue(_) => Arc::new(JsonHandler::default()),
        SaveItem::Tensors(_) => Arc::new(TensorHandler),
        SaveItem::Bytes(_) => Arc::new(BytesHandler),
        SaveItem::PyTree(_) | SaveItem::PyTreeShard(..) => {
            Arc::new(crate::StandardHandler::default())
        }
        SaveItem::Custom(_) => {
            return Err(Error::invalid_argument(
                "SaveItem::Custom has no default handler: register a handler for this item",
            ))
        }
    })
}

/// Handlers by item name, as Orbax's `CheckpointHandlerRegistry` (spec §6.2), keyed by item name
/// only (ckpt has no args types). Cloning is cheap: handlers are shared.
#[derive(Debug, Clone, Default)]
pub struct HandlerRegistry {
    handlers: BTreeMap<String, Arc<dyn CheckpointHandler>>,
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for item `item`.
    ///
    /// # Errors
    /// `AlreadyExists` when `item` already has a handler (Orbax `AlreadyExistsError`);
    /// `InvalidArgument` when `item` is not a valid item name ([`ckpt_core::validate_item_name`]).
    pub fn add(&mut self, item: &str, handler: Arc<dyn CheckpointHandler>) -> Result<()> {
        ckpt_core::validate_item_name(item)?;
        if self.handlers.contains_key(item) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("item {item:?} already has a handler registered"),
            ));
        }
        self.handlers.insert(item.to_string(), handler);
        Ok(())
    }

    /// The handler registered for `item`, if any.
    pub fn get(&self, item: &str) -> Option<Arc<dyn CheckpointHandler>> {
        self.handlers.get(item).cloned()
    }

    /// Whether `item` has a registered handler.
    pub fn contains(&self, item: &str) -> bool {
        self.handlers.contains_key(item)
    }

    /// The registered item names, sorted.
    pub fn items(&self) -> impl Iterator<Item = &str> + '_ {
        self.handlers.keys().map(String::as_str)
    }

    /// The handler to restore `item` with (spec §6.4): its registered handler if it has one
    /// (whatever `type_string` says, as Orbax), else [`handler_for_type_string`] of `type_string`,
    /// the string recorded for the item in the step's `item_handlers`.
    ///
    /// # Errors
    /// - `InvalidArgument` naming the item when it is not registered and `type_string` is `None`;
    /// - `Unsupported` naming the item and the string when the string names an Orbax tensorstore
    ///   handler ckpt cannot read (`item "state" was written by handler "...ArrayCheckpointHandler":
    ///   Orbax's ArrayCheckpointHandler (tensorstore format), which ckpt cannot read`) or no linked
    ///   handler;
    /// - `Handler` naming the item when the handler cannot be built from its type string alone.
    pub fn resolve(
        &self,
        item: &str,
        type_string: Option<&str>,
    ) -> Result<Arc<dyn CheckpointHandler>> {
        if let Some(h) = self.handlers.get(item) {
            return Ok(h.clone());
        }
        let Some(ts) = type_string else {
            return Err(Error::invalid_argument(format!(
                "item {item:?} has no registered handler and the checkpoint records no handler type for it: \
                 register a handler for this item"
            )));
        };
        lookup(ts).map(Arc::from).map_err(|f| match f {
            LookupFailure::OrbaxTensorstore(class) => Error::new(
                ErrorKind::Unsupported,
                format!(
                    "item {item:?} was written by handler {ts:?}: Orbax's {class} (tensorstore format), \
                     which ckpt cannot read"
                ),
            ),
            LookupFailure::Unknown => Error::new(
                ErrorKind::Unsupported,
                format!(
                    "item {item:?} was written by handler {ts:?}, which is not linked into this program: \
                     register a handler for the item or link the crate that defines it"
                ),
            ),
            LookupFailure::NotConstructible(e) => Error::new(
                ErrorKind::Handler,
                format!("item {item:?} was written by handler {ts:?}, which cannot be built from its type string alone: register a handler for the item"),
            )
            .with_source(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ORBAX_JSON_HANDLER, ORBAX_TENSORSTORE_HANDLERS};

    #[test]
    fn built_in_type_strings() {
        let h = handler_for_type_string(ORBAX_JSON_HANDLER).unwrap();
        assert_eq!(h.type_string(), ORBAX_JSON_HANDLER);
        assert_eq!(format!("{h:?}"), format!("{:?}", JsonHandler::default()));
        assert_eq!(
            handler_for_type_string("ckpt.tensors")
                .unwrap()
                .type_string(),
            "ckpt.tensors"
        );
        assert_eq!(
            handler_for_type_string("ckpt.bytes").unwrap().type_string(),
            "ckpt.bytes"
        );
    }

    #[test]
    fn orbax_tensorstore_is_unsupported() {
        for ts in ORBAX_TENSORSTORE_HANDLERS {
            let e = handler_for_type_string(ts).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.to_string().contains(class_name(ts)), "{e}");
            assert!(e.to_string().contains("tensorstore format"), "{e}");
        }
        let e = HandlerRegistry::new()
            .resolve("state", Some(ORBAX_TENSORSTORE_HANDLERS[0]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            e.to_string()
                .starts_with("Unsupported: item \"state\" was written by handler \"orbax."),
            "{e}"
        );
    }

    #[test]
    fn unknown_is_unsupported() {
        let e = handler_for_type_string("nope.Nothing").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("nope.Nothing"));
        let e = HandlerRegistry::new()
            .resolve("x", Some("nope.Nothing"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            e.to_string().contains("\"x\"") && e.to_string().contains("nope.Nothing"),
            "{e}"
        );
        let e = HandlerRegistry::new().resolve("x", None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("\"x\""));
    }

    #[test]
    fn registry_add_get_resolve() {
        let mut r = HandlerRegistry::new();
        r.add("metrics", Arc::new(JsonHandler::with_filename("metrics")))
            .unwrap();
        r.add("params", Arc::new(TensorHandler)).unwrap();
        assert_eq!(
            r.add("params", Arc::new(BytesHandler)).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            r.add("../x", Arc::new(BytesHandler)).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(r.items().collect::<Vec<_>>(), ["metrics", "params"]);
        assert!(r.contains("params") && !r.contains("x"));
        assert!(r.get("nope").is_none());
        // A registered item wins over the recorded type string.
        let h = r.resolve("metrics", Some("anything")).unwrap();
        assert_eq!(
            format!("{h:?}"),
            format!("{:?}", JsonHandler::with_filename("metrics"))
        );
        assert_eq!(
            r.resolve("other", Some("ckpt.bytes"))
                .unwrap()
                .type_string(),
            "ckpt.bytes"
        );
    }

    #[test]
    fn defaults() {
        let v = serde_json::json!({});
        assert_eq!(
            default_handler_for(&SaveItem::Json(&v))
                .unwrap()
                .type_string(),
            ORBAX_JSON_HANDLER
        );
        assert_eq!(
            default_handler_for(&SaveItem::JsonValue(std::borrow::Cow::Owned(v)))
                .unwrap()
                .type_string(),
            ORBAX_JSON_HANDLER
        );
        let t = crate::TensorMap::new();
        assert_eq!(
            default_handler_for(&SaveItem::Tensors(std::borrow::Cow::Borrowed(&t)))
                .unwrap()
                .type_string(),
            "ckpt.tensors"
        );
        assert_eq!(
            default_handler_for(&SaveItem::Bytes(std::borrow::Cow::Borrowed(b"x")))
                .unwrap()
                .type_string(),
            "ckpt.bytes"
        );
        let e = default_handler_for(&SaveItem::Custom(&5u8)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("register a handler for this item"));
    }
}
