//! What the registry keeps of credentials: device secrets as salted
//! SHA-256, API tokens as SHA-256 with their grant, expiry and revocation.
//! Never a secret or a token itself: those are shown once, when made.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use vigil_model::{EpochMs, OwnerId, Region};

use crate::auth::{Principal, Refusal, TokenId, TokenInfo};
use crate::types::Role;

/// A device secret as stored: a random salt and SHA-256(salt ‖ secret).
/// 48 bytes in memory; hex in files (`{"salt": …, "sha256": …}`, the shape
/// `registry.json` had).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SecretHash {
    salt: [u8; 16],
    sha256: [u8; 32],
}

impl SecretHash {
    pub(crate) fn new(secret: &str) -> SecretHash {
        let salt = random_bytes::<16>();
        SecretHash {
            salt,
            sha256: salted(&salt, secret),
        }
    }

    pub(crate) fn verify(&self, secret: &str) -> bool {
        ct_eq(&salted(&self.salt, secret), &self.sha256)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretHashHex {
    salt: String,
    sha256: String,
}

impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SecretHashHex {
            salt: hex::encode(self.salt),
            sha256: hex::encode(self.sha256),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let h = SecretHashHex::deserialize(d)?;
        let bad =
            |what: &str| serde::de::Error::custom(format!("{what} is not hex of the right length"));
        let mut salt = [0u8; 16];
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&h.salt, &mut salt).map_err(|_| bad("salt"))?;
        hex::decode_to_slice(&h.sha256, &mut sha256).map_err(|_| bad("sha256"))?;
        Ok(SecretHash { salt, sha256 })
    }
}

pub(crate) fn salted(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Secret hashes and the work a refused check does instead, so that timing
/// does not tell which device ids exist.
pub(crate) fn verify_or_pretend(stored: Option<&SecretHash>, secret: &str) -> bool {
    match stored {
        Some(hash) => hash.verify(secret),
        None => {
            let _ = ct_eq(&salted(&[0; 16], secret), &[0; 32]);
            false
        }
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// A new device secret: 32 random bytes, hex.
pub(crate) fn new_device_secret() -> String {
    hex::encode(random_bytes::<32>())
}

/// Constant-time equality (the lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An API token as stored: its hash, never the token. A revoked token is
/// kept (with `revoked_at`) so that lists show what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredToken {
    /// Empty in files written before tokens had ids; loading derives one.
    #[serde(default)]
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub regions: Vec<Region>,
    #[serde(default)]
    pub owner_id: Option<OwnerId>,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// `None` only for tokens issued before tokens expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl StoredToken {
    pub(crate) fn info(&self, now: EpochMs, last_used: Option<EpochMs>) -> TokenInfo {
        let status = if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|t| t.timestamp_millis() <= now) {
            "expired"
        } else {
            "active"
        };
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            regions: self.regions.clone(),
            owner_id: self.owner_id.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: last_used.and_then(DateTime::from_timestamp_millis),
            status: status.to_owned(),
        }
    }

    pub(crate) fn principal(&self) -> Principal {
        match (self.role, &self.owner_id) {
            (Role::Admin, _) => Principal::Admin,
            (Role::Supervisor, _) => Principal::Supervisor {
                regions: self.regions.clone(),
            },
            (Role::Analyst, _) => Principal::Analyst {
                regions: self.regions.clone(),
            },
            (Role::Owner, Some(owner_id)) => Principal::Owner {
                owner_id: owner_id.clone(),
            },
            // Refused on creation; a hand-edited file gets an empty grant.
            (Role::Owner, None) => Principal::Supervisor {
                regions: Vec::new(),
            },
        }
    }

    pub(crate) fn entry(&self) -> TokenEntry {
        TokenEntry {
            id: self.id.clone(),
            principal: self.principal(),
            expires_ms: self.expires_at.map(|d| d.timestamp_millis()),
            revoked_ms: self.revoked_at.map(|d| d.timestamp_millis()),
        }
    }
}

/// A token as the hot path checks it.
#[derive(Debug, Clone)]
pub(crate) struct TokenEntry {
    pub id: TokenId,
    pub principal: Principal,
    pub expires_ms: Option<EpochMs>,
    pub revoked_ms: Option<EpochMs>,
}

impl TokenEntry {
    /// `Ok(expiry)` while the token is good.
    pub(crate) fn validity(&self, now: EpochMs) -> Result<Option<EpochMs>, Refusal> {
        if let Some(at) = self.revoked_ms {
            return Err(Refusal::Revoked { at });
        }
        match self.expires_ms {
            Some(at) if at <= now => Err(Refusal::Expired { at }),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_themselves() {
        let h = SecretHash::new("abc");
        assert!(h.verify("abc"));
        assert!(!h.verify("abd"));
        assert!(!h.verify(""));
        let other = SecretHash::new("abc");
        assert_ne!(h.salt, other.salt, "salts are random");
        assert_ne!(h.sha256, other.sha256, "same secret, different hash");
    }

    #[test]
    fn secret_hashes_keep_their_file_shape() {
        let h = SecretHash::new("abc");
        let json = serde_json::to_value(h).unwrap();
        assert_eq!(json["salt"].as_str().unwrap().len(), 32);
        assert_eq!(json["sha256"].as_str().unwrap().len(), 64);
        let back: SecretHash = serde_json::from_value(json).unwrap();
        assert!(back.verify("abc"));
        let short = serde_json::json!({"salt": "00", "sha256": "00"});
        assert!(serde_json::from_value::<SecretHash>(short).is_err());
    }

    #[test]
    fn constant_time_compare_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
