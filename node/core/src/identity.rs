//! Node identity: an ed25519 key pair and the peer id derived from its public key.
//!
//! The peer id is byte-for-byte the libp2p `PeerId` of the same ed25519 key: the identity
//! multihash of the protobuf-encoded public key, shown in base58btc (`12D3KooW...`). The core
//! stores only the 32-byte public key, which makes a `PeerId` `Copy`, ordered and cheap.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, Verifier};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Protobuf prefix of an ed25519 public key (`KeyType = Ed25519`, 32 data bytes) wrapped in
/// an identity multihash (code 0x00, length 36).
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// Length of a peer id in multihash bytes.
pub const PEER_ID_BYTES: usize = PEER_ID_PREFIX.len() + 32;

/// Errors about keys, peer ids and signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The text is not base58btc.
    #[error("peer id is not valid base58: {0}")]
    Base58(String),
    /// The bytes are not an identity multihash of an ed25519 key.
    #[error("peer id is not an ed25519 peer id (expected 38 bytes starting 00 24 08 01 12 20)")]
    NotEd25519,
    /// The public key bytes are not a point on the curve.
    #[error("public key is not a valid ed25519 point")]
    BadKey,
    /// The signature does not match the message and key.
    #[error("signature does not verify")]
    BadSignature,
}

/// The id of a peer: its ed25519 public key.
///
/// Ordered by its bytes, compared as four big-endian words: the same order as comparing
/// the bytes one by one, without a call to `memcmp` on every step of an ordered-map search.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// The `i`th 8-byte word of the key, big-endian, so words order like the bytes.
    fn word(&self, i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    }

    /// The first 8 bytes of the key as a number: peer ids with a smaller prefix order first.
    pub fn prefix(&self) -> u64 {
        self.word(0)
    }
}

impl Ord for PeerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (0..4)
            .map(|i| self.word(i).cmp(&other.word(i)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PeerId {
    /// The peer id of a raw ed25519 public key.
    pub fn from_public_key(key: [u8; 32]) -> Self {
        PeerId(key)
    }

    /// The raw ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.0
    }

    /// The libp2p multihash bytes of this peer id.
    pub fn to_bytes(&self) -> [u8; PEER_ID_BYTES] {
        let mut out = [0u8; PEER_ID_BYTES];
        out[..PEER_ID_PREFIX.len()].copy_from_slice(&PEER_ID_PREFIX);
        out[PEER_ID_PREFIX.len()..].copy_from_slice(&self.0);
        out
    }

    /// Parses libp2p multihash bytes; only ed25519 peer ids are accepted.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        if bytes.len() != PEER_ID_BYTES || bytes[..PEER_ID_PREFIX.len()] != PEER_ID_PREFIX {
            return Err(IdentityError::NotEd25519);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[PEER_ID_PREFIX.len()..]);
        Ok(PeerId(key))
    }

    /// Checks `signature` over `message` against this peer's public key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), IdentityError> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::BadKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify(message, &sig)
            .map_err(|_| IdentityError::BadSignature)
    }

    /// A short form for logs and traces: the last 6 characters of the base58 text.
    pub fn short(&self) -> String {
        let full = self.to_string();
        full[full.len() - 6..].to_string()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.to_bytes()).into_string())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = bs58::decode(s)
            .into_vec()
            .map_err(|e| IdentityError::Base58(e.to_string()))?;
        PeerId::from_bytes(&bytes)
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(PeerId(<[u8; 32]>::deserialize(d)?))
        }
    }
}

/// An ed25519 signature.
///
/// Ordered by its bytes, compared word by word like [`PeerId`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Ord for Signature {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let word = |s: &Signature, i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s.0[i * 8..i * 8 + 8]);
            u64::from_be_bytes(w)
        };
        (0..8)
            .map(|i| word(self, i).cmp(&word(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for Signature {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Signature, E> {
                let bytes: [u8; 64] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Signature(bytes))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// An ed25519 key pair.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A key pair from its 32-byte secret seed.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Keypair {
            signing: ed25519_dalek::SigningKey::from_bytes(&secret),
        }
    }

    /// A fresh key pair drawn from `rng` (seeded in simulation, OS randomness in production).
    pub fn generate(rng: &mut impl RngCore) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }

    /// The 32-byte secret seed, for storing the key.
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The peer id of this key pair.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn peer_id_text_round_trips_and_has_libp2p_shape() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let id = Keypair::generate(&mut rng).peer_id();
        let text = id.to_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<PeerId>(), Ok(id));
    }

    #[test]
    fn peer_ids_order_like_their_bytes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut ids: Vec<PeerId> = (0..200)
            .map(|_| Keypair::generate(&mut rng).peer_id())
            .collect();
        // Ids that differ only in later words, and only in their last byte.
        let mut near = [7u8; 32];
        ids.push(PeerId(near));
        near[31] = 8;
        ids.push(PeerId(near));
        near[20] = 0;
        ids.push(PeerId(near));
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0), "{a} {b}");
            }
        }
    }

    #[test]
    fn rejects_non_ed25519_ids() {
        // A sha256 multihash peer id (RSA keys) is refused with a clear error.
        let rsa = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        assert_eq!(rsa.parse::<PeerId>(), Err(IdentityError::NotEd25519));
        assert!(matches!(
            "0OIl".parse::<PeerId>(),
            Err(IdentityError::Base58(_))
        ));
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let a = Keypair::generate(&mut rng);
        let b = Keypair::generate(&mut rng);
        let sig = a.sign(b"hello");
        assert_eq!(a.peer_id().verify(b"hello", &sig), Ok(()));
        assert_eq!(
            a.peer_id().verify(b"hellO", &sig),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            b.peer_id().verify(b"hello", &sig),
            Err(IdentityError::BadSignature)
        );
    }
}
