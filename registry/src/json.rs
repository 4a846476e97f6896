//! JSON parsing for every document the registry reads: an import, one
//! entity of the API, its own files. A mistake names its path
//! (`equipment[3].category: unknown variant …`), so the data layer and the
//! HTTP layer report it alike without depending on each other.

use serde::de::DeserializeOwned;

/// Why bytes did not parse as the wanted document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Not JSON at all (bad syntax or cut short), rather than JSON of the
    /// wrong shape.
    pub syntax: bool,
    /// `path: what was wrong`.
    pub detail: String,
}

impl JsonError {
    /// The message people read: the path and the mistake, and for bytes
    /// that are not JSON at all, that they are not.
    pub fn message(&self) -> String {
        if self.syntax {
            format!("not valid JSON: {}", self.detail)
        } else {
            self.detail.clone()
        }
    }
}

/// Parses `bytes` as a `T`. Trailing bytes after the value are ignored, as
/// the HTTP API always did.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| JsonError {
        syntax: !matches!(e.inner().classify(), serde_json::error::Category::Data),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_name_their_path_and_kind() {
        let e = parse::<std::collections::BTreeMap<String, Vec<u8>>>(b"{\"a\": [1, \"x\"]}")
            .unwrap_err();
        assert!(!e.syntax);
        assert!(e.detail.starts_with("a[1]: "), "{}", e.detail);
        let e = parse::<Vec<u8>>(b"[1, ").unwrap_err();
        assert!(e.syntax);
        assert!(
            e.message().starts_with("not valid JSON: "),
            "{}",
            e.message()
        );
    }
}
