//! The serde forms of config fields (`with = "form::…"`): each reads a present field as `Some`.

/// The option's own serde form.
pub(super) mod plain {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(in crate::config) fn serialize<T: Serialize, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub(in crate::config) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }
}

/// A number, or `false`/`null` for off (TOML has no null, so off is written as `false`).
pub(super) mod number_or_off {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(u64),
        Off(bool),
    }

    pub(in crate::config) fn serialize<S: Serializer>(
        v: &Option<Option<u64>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(Some(n)) => s.serialize_u64(*n),
            Some(None) => s.serialize_bool(false),
            None => s.serialize_none(),
        }
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<u64>>, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None | Some(Repr::Off(false)) => Ok(Some(None)),
            Some(Repr::Number(n)) => Ok(Some(Some(n))),
            Some(Repr::Off(true)) => Err(serde::de::Error::custom(
                "expected a number, or false (or null) for off",
            )),
        }
    }
}

/// `atomicity` as Orbax's strings.
pub(super) mod atomicity {
    use ckpt_storage::AtomicityMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::config) fn serialize<S: Serializer>(
        v: &Option<AtomicityMode>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<AtomicityMode>, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<AtomicityMode>()
            .map(Some)
            .map_err(|e| serde::de::Error::custom(e.message()))
    }
}
