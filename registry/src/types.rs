//! Small value types of the registry: the ids the model crate does not
//! have, the unified social credit code, strict dates and the fixed words of
//! registry.md. Each validates once, when it is deserialized or built.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vigil_model::ids::IdError;
use vigil_model::{EquipmentId, string_id, word_enum};

// Ids of the registry's own entities share the shape of `EquipmentId`
// (printable ASCII without `/ ? # +`, at most 64 bytes): a station id
// doubles as the binding's `equipment_id` of filling scales, so it must be
// a valid equipment id anyway.
string_id!(
    /// A gas-cylinder filling station.
    StationId, "station_id", like EquipmentId
);
string_id!(
    /// A person (maintenance worker, filling operator, …).
    PersonId, "person_id", like EquipmentId
);
string_id!(
    /// The code stamped on a gas cylinder, as filling records carry it.
    CylinderCode, "cylinder_code", like EquipmentId
);
string_id!(
    /// The owner or maintainer that employs a person.
    EmployerId, "employer_id", like EquipmentId
);

impl StationId {
    /// The station as the binding's equipment id (same shape by construction).
    pub fn as_equipment_id(&self) -> &EquipmentId {
        &self.0
    }
}

/// Characters of the unified social credit code (GB 32100-2015): digits and
/// upper-case letters without I, O, S, V, Z.
const CREDIT_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A unified social credit code (统一社会信用代码): 18 characters of its
/// alphabet. The check digit is not verified (see docs/registry.md).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreditCode(String);

impl CreditCode {
    pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
        let v = value.as_ref();
        if v.len() == 18 && v.chars().all(|c| CREDIT_ALPHABET.contains(c)) {
            Ok(Self(v.to_owned()))
        } else {
            Err(IdError {
                what: "credit_code",
                value: v.to_owned(),
                expected: "18 characters of the unified social credit code alphabet (digits and A-Z without I, O, S, V, Z)",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for CreditCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CreditCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Strict `YYYY-MM-DD` dates for `#[serde(with = "date")]` (chrono's own
/// format also accepts unpadded months and days).
pub(crate) mod date {
    use super::*;

    pub(crate) fn parse(s: &str) -> Option<NaiveDate> {
        let b = s.as_bytes();
        let shape = b.len() == 10
            && b.iter().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            });
        if !shape {
            return None;
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    }

    pub(crate) fn format(d: &NaiveDate) -> String {
        d.format("%Y-%m-%d").to_string()
    }

    pub(crate) fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a date YYYY-MM-DD")))
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<NaiveDate>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&format(d)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<NaiveDate>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => parse(&s).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("{s:?} is not a date YYYY-MM-DD"))
                }),
            }
        }
    }
}

pub use vigil_model::{Category, FILLING_STATION_CATEGORY};

word_enum!(EquipmentStatus { InUse = "in_use", Stopped = "stopped", Scrapped = "scrapped" });
word_enum!(DeviceKind { Elevator = "elevator", Ride = "ride", Video = "video", Filling = "filling" });
word_enum!(CylinderStatus { InUse = "in_use", Scrapped = "scrapped" });
word_enum!(MaintenanceKind { HalfMonth = "half_month", Quarter = "quarter", HalfYear = "half_year", Year = "year" });
word_enum!(
    /// What a bearer token may do (registry.md, "Roles").
    Role { Admin = "admin", Supervisor = "supervisor", Owner = "owner", Analyst = "analyst" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_codes_use_the_official_alphabet() {
        assert!(CreditCode::new("91440703MA4UJ8XK2Q").is_ok());
        assert!(
            CreditCode::new("91440703MA4UJ8XK2").is_err(),
            "17 characters"
        );
        assert!(
            CreditCode::new("91440703MA4UJ8XKIQ").is_err(),
            "I is not in the alphabet"
        );
        assert!(CreditCode::new("91440703ma4uj8xk2q").is_err(), "lower case");
        let err = CreditCode::new("x").unwrap_err();
        assert!(err.to_string().contains("credit_code"), "{err}");
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(
            date::parse("2025-02-28"),
            NaiveDate::from_ymd_opt(2025, 2, 28)
        );
        assert_eq!(date::parse("2025-02-30"), None);
        assert_eq!(date::parse("2025-2-28"), None);
        assert_eq!(date::parse("2025/02/28"), None);
        assert_eq!(date::parse("2025-02-28T00:00:00Z"), None);
    }

    #[test]
    fn local_ids_name_themselves() {
        assert!(StationId::new("ST-1").is_ok());
        let err = PersonId::new("a b").unwrap_err();
        assert_eq!(err.what, "person_id");
    }
}
