//! Newtype ids. Each validates its shape once, at the edge, so the rest of
//! the engine can trust it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: {expected}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a newtype id that validates its shape once, when built or
/// deserialized. Two forms: `Name, "what", "expected", check_fn` holds the
/// text itself; `Name, "what", like Inner` holds an `Inner` id (same shape,
/// its own name in errors), so it can be used as one.
#[macro_export]
macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $what:literal, $expected:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(::std::sync::Arc<str>);

        impl $name {
            pub fn new(value: impl AsRef<str>) -> Result<Self, $crate::ids::IdError> {
                let value = value.as_ref();
                let check: fn(&str) -> bool = $check;
                if check(value) {
                    Ok(Self(::std::sync::Arc::from(value)))
                } else {
                    Err($crate::ids::IdError { what: $what, value: value.to_owned(), expected: $expected })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        $crate::string_id!(@common $name);
    };
    ($(#[$meta:meta])* $name:ident, $what:literal, like $inner:ty) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($inner);

        impl $name {
            pub fn new(value: impl AsRef<str>) -> Result<Self, $crate::ids::IdError> {
                <$inner>::new(value)
                    .map(Self)
                    .map_err(|e| $crate::ids::IdError { what: $what, ..e })
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        $crate::string_id!(@common $name);
    };
    (@common $name:ident) => {
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ids::IdError;
            fn from_str(s: &str) -> Result<Self, $crate::ids::IdError> {
                Self::new(s)
            }
        }

        impl $crate::__serde::Serialize for $name {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as $crate::__serde::Deserialize>::deserialize(d)?;
                Self::new(&*s).map_err(<D::Error as $crate::__serde::de::Error>::custom)
            }
        }
    };
}

fn alnum_1_64(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Registry keys: printable, no whitespace or `/` (they appear in topics and
/// URL paths), at most 64 bytes.
fn registry_key(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?' && b != b'#' && b != b'+')
}

string_id!(
    /// An edge device: `[A-Za-z0-9]{1,64}`, also its certificate tenant.
    DeviceId, "device_id", "1 to 64 ASCII letters and digits", alnum_1_64
);
string_id!(
    /// A registered piece of equipment.
    EquipmentId, "equipment_id", "1 to 64 printable ASCII characters without '/', '?', '#', '+'", registry_key
);
string_id!(
    /// A using unit (使用单位).
    OwnerId, "owner_id", "1 to 64 printable ASCII characters without '/', '?', '#', '+'", registry_key
);
string_id!(
    /// A maintenance company (维保单位).
    MaintainerId, "maintainer_id", "1 to 64 printable ASCII characters without '/', '?', '#', '+'", registry_key
);
string_id!(
    /// An alarm; stable across every change of that alarm.
    AlarmId, "alarm_id", "1 to 64 printable ASCII characters without '/', '?', '#', '+'", registry_key
);
string_id!(
    /// A rule's stable id, e.g. `elevator.trapped`.
    RuleId, "rule", "lower-case words joined by '.' and '_'", |s: &str| {
        !s.is_empty() && s.len() <= 96 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    }
);

/// A 6-digit administrative division code (e.g. `440703`). Province codes
/// end in `0000`, city codes in `00`; a region covers every code that shares
/// its significant prefix (`440700` covers `440703`, `440000` covers both).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region([u8; 6]);

impl Region {
    pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
        let v = value.as_ref();
        let bytes = v.as_bytes();
        if bytes.len() == 6 && bytes.iter().all(u8::is_ascii_digit) && &bytes[..2] != b"00" {
            let mut code = [0u8; 6];
            code.copy_from_slice(bytes);
            Ok(Self(code))
        } else {
            Err(IdError {
                what: "region",
                value: v.to_owned(),
                expected: "a 6-digit administrative division code such as 440703",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or("000000")
    }

    /// The significant prefix: `44` for a province, `4407` for a city,
    /// all six digits for a county.
    pub fn prefix(&self) -> &str {
        let s = self.as_str();
        if s.ends_with("0000") {
            &s[..2]
        } else if s.ends_with("00") {
            &s[..4]
        } else {
            s
        }
    }

    /// Whether a grant of `self` covers `other` (itself or a sub-region).
    pub fn covers(&self, other: &Region) -> bool {
        other.as_str().starts_with(self.prefix())
    }

    /// The city this region belongs to (`440703` → `440700`).
    pub fn city(&self) -> Region {
        let mut c = self.0;
        c[4] = b'0';
        c[5] = b'0';
        Region(c)
    }

    /// The province this region belongs to (`440703` → `440000`).
    pub fn province(&self) -> Region {
        let mut c = self.0;
        c[2..].copy_from_slice(b"0000");
        Region(c)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.as_str())
    }
}

impl std::str::FromStr for Region {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&*s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_letters_and_digits_only() {
        assert!(DeviceId::new("EL0001").is_ok());
        assert!(DeviceId::new("").is_err());
        assert!(DeviceId::new("EL-1").is_err());
        assert!(DeviceId::new("a".repeat(65)).is_err());
        let err = DeviceId::new("a/b").unwrap_err();
        assert!(err.to_string().contains("device_id"), "{err}");
    }

    #[test]
    fn region_grants_cover_sub_regions() {
        let province = Region::new("440000").unwrap();
        let city = Region::new("440700").unwrap();
        let county = Region::new("440703").unwrap();
        let other_city = Region::new("440100").unwrap();
        assert!(province.covers(&city) && province.covers(&county));
        assert!(city.covers(&county) && city.covers(&city));
        assert!(!city.covers(&other_city) && !county.covers(&city));
        assert_eq!(county.city(), city);
        assert_eq!(county.province(), province);
        assert!(Region::new("44070").is_err() && Region::new("44070x").is_err());
    }

    #[test]
    fn ids_round_trip_through_json() {
        let id: DeviceId = serde_json::from_str("\"EL7\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"EL7\"");
        assert!(serde_json::from_str::<DeviceId>("\"EL 7\"").is_err());
        let r: Region = serde_json::from_str("\"440703\"").unwrap();
        assert_eq!(r.as_str(), "440703");
    }
}
