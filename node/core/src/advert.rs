//! Signed advertisements: what a node says about itself in its hello and what peers pass on.
//!
//! An [`Advert`] is signed by the key of the peer it describes, so it can travel through
//! peer-table exchange and gossip and still be trusted. A forged, oversized, expired or
//! future-dated advert is rejected by [`SignedAdvert::verify`] and never stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::{Keypair, PeerId, Signature};
use crate::time::Timestamp;
use crate::wire::PROTOCOL_VERSION;

/// Domain separation for advert signatures.
const SIGNING_CONTEXT: &[u8] = b"flotilla/advert/v1\0";

/// At most this many listen addresses in one advert.
pub const ADVERT_ADDRS_MAX: usize = 16;
/// At most this many bytes per listen address.
pub const ADVERT_ADDR_BYTES_MAX: usize = 256;
/// At most this many bytes in the region hint.
pub const ADVERT_REGION_BYTES_MAX: usize = 32;
/// At most this many executors in one advert.
pub const ADVERT_EXECUTORS_MAX: usize = 8;
/// At most this many bytes per executor name.
pub const ADVERT_EXECUTOR_BYTES_MAX: usize = 32;
/// How far in the future an advert's timestamp may lie (clock skew tolerated).
pub const ADVERT_FUTURE_MAX: Duration = Duration::from_secs(120);

/// A summary of the resources a node offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Disk in GiB.
    pub disk_gb: u64,
    /// GPUs.
    pub gpus: u32,
}

/// What a node says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    /// The node's protocol version.
    pub protocol_version: u16,
    /// The node that signed this advert.
    pub peer_id: PeerId,
    /// Addresses the node can be dialled on (multiaddr text, without `/p2p/`).
    pub listen_addrs: Vec<String>,
    /// Resources the node offers.
    pub resources: Resources,
    /// Region hint (e.g. `eu-west`), if the operator configured one.
    pub region: Option<String>,
    /// When the node started.
    pub started_at: Timestamp,
    /// When this advert was signed.
    pub timestamp: Timestamp,
    /// Executors the node runs jobs with (e.g. `docker`); empty for a node offering none.
    pub executors: Vec<String>,
}

/// Why an advert was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// The signature does not match the advert and its peer id.
    #[error("advert signature does not verify")]
    Forged,
    /// Too many or too long fields.
    #[error("advert is oversized: {0}")]
    Oversized(&'static str),
    /// Signed longer ago than the time to live.
    #[error("advert expired")]
    Expired,
    /// Signed further in the future than clock skew explains.
    #[error("advert is dated in the future")]
    FromTheFuture,
    /// Speaks a protocol version this node does not.
    #[error("advert speaks protocol version {0}, this node speaks {PROTOCOL_VERSION}")]
    Version(u16),
}

impl AdvertError {
    /// A one-word label for traces and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AdvertError::Forged => "forged",
            AdvertError::Oversized(_) => "oversized",
            AdvertError::Expired => "expired",
            AdvertError::FromTheFuture => "future",
            AdvertError::Version(_) => "version",
        }
    }
}

/// An advert and the signature of its peer over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAdvert {
    /// The advert.
    pub advert: Advert,
    /// Signature by `advert.peer_id` over the advert's encoding.
    pub signature: Signature,
}

fn signing_bytes(advert: &Advert) -> Vec<u8> {
    let mut out = SIGNING_CONTEXT.to_vec();
    // Encoding a plain struct into a Vec cannot fail.
    out.extend(postcard::to_stdvec(advert).unwrap_or_default());
    out
}

impl SignedAdvert {
    /// Signs `advert` with `keypair`; the advert's peer id must be the key pair's.
    pub fn sign(keypair: &Keypair, advert: Advert) -> Self {
        debug_assert_eq!(advert.peer_id, keypair.peer_id());
        let signature = keypair.sign(&signing_bytes(&advert));
        SignedAdvert { advert, signature }
    }

    /// Checks size, version, freshness and signature at time `now` with time to live `ttl`.
    pub fn verify(&self, now: Timestamp, ttl: Duration) -> Result<&Advert, AdvertError> {
        self.check_cheap(now, ttl)?;
        self.check_signature()?;
        Ok(&self.advert)
    }

    /// Checks the signature alone.
    pub fn check_signature(&self) -> Result<(), AdvertError> {
        self.advert
            .peer_id
            .verify(&signing_bytes(&self.advert), &self.signature)
            .map_err(|_| AdvertError::Forged)
    }

    /// Every check but the signature: sizes, version and freshness.
    pub fn check_cheap(&self, now: Timestamp, ttl: Duration) -> Result<(), AdvertError> {
        let a = &self.advert;
        if a.protocol_version != PROTOCOL_VERSION {
            return Err(AdvertError::Version(a.protocol_version));
        }
        if a.listen_addrs.len() > ADVERT_ADDRS_MAX {
            return Err(AdvertError::Oversized("too many listen addresses"));
        }
        if a.listen_addrs
            .iter()
            .any(|s| s.len() > ADVERT_ADDR_BYTES_MAX)
        {
            return Err(AdvertError::Oversized("listen address too long"));
        }
        if a.region
            .as_ref()
            .is_some_and(|r| r.len() > ADVERT_REGION_BYTES_MAX)
        {
            return Err(AdvertError::Oversized("region too long"));
        }
        if a.executors.len() > ADVERT_EXECUTORS_MAX {
            return Err(AdvertError::Oversized("too many executors"));
        }
        if a.executors
            .iter()
            .any(|e| e.len() > ADVERT_EXECUTOR_BYTES_MAX)
        {
            return Err(AdvertError::Oversized("executor name too long"));
        }
        self.check_fresh(now, ttl)
    }

    /// The freshness checks alone: neither expired nor dated in the future at `now`. The
    /// only checks an advert that passed them all once can fail later.
    pub fn check_fresh(&self, now: Timestamp, ttl: Duration) -> Result<(), AdvertError> {
        let a = &self.advert;
        if a.timestamp > now + ADVERT_FUTURE_MAX {
            return Err(AdvertError::FromTheFuture);
        }
        if a.timestamp + ttl < now {
            return Err(AdvertError::Expired);
        }
        Ok(())
    }
}

/// Adverts whose signature was already checked, so that each is verified once.
///
/// A node keeps its own; a simulator may share one among all its nodes, which changes no
/// outcome (verification is a pure function of the advert) but saves the repeated work.
/// An entry matches only the identical advert, so a valid signature reused on altered
/// content is still caught. When full, the entry with the smallest signature is forgotten.
/// Adverts are held as the `Arc` they arrived in, so a cache hit on the very same allocation
/// (the usual case in a simulator, where adverts are shared) costs no comparison.
#[derive(Debug)]
pub struct VerifiedAdverts {
    capacity: usize,
    seen: Mutex<BTreeMap<Signature, Arc<SignedAdvert>>>,
}

impl VerifiedAdverts {
    /// An empty cache holding at most `capacity` adverts.
    pub fn new(capacity: usize) -> Self {
        VerifiedAdverts {
            capacity: capacity.max(1),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Like [`SignedAdvert::verify`], skipping the signature check for an advert seen before.
    pub fn verify(
        &self,
        signed: &Arc<SignedAdvert>,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<(), AdvertError> {
        signed.check_cheap(now, ttl)?;
        let lock = || {
            self.seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if lock()
            .get(&signed.signature)
            .is_some_and(|held| Arc::ptr_eq(held, signed) || **held == **signed)
        {
            return Ok(());
        }
        signed.check_signature()?;
        let mut seen = lock();
        if seen.len() >= self.capacity {
            seen.pop_first();
        }
        seen.insert(signed.signature, Arc::clone(signed));
        Ok(())
    }

    /// Adverts held.
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.len())
    }

    /// True if no advert is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::SeedTree;

    fn advert(kp: &Keypair, at: Timestamp) -> Advert {
        Advert {
            protocol_version: PROTOCOL_VERSION,
            peer_id: kp.peer_id(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            resources: Resources {
                cores: 4,
                memory_mb: 8192,
                disk_gb: 100,
                gpus: 0,
            },
            region: Some("eu-west".into()),
            started_at: at,
            timestamp: at,
            executors: Vec::new(),
        }
    }

    #[test]
    fn valid_advert_verifies() {
        let kp = Keypair::generate(&mut SeedTree::new(1).rng());
        let now = Timestamp::from_secs(1000);
        let signed = SignedAdvert::sign(&kp, advert(&kp, now));
        assert!(signed.verify(now, Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn forged_oversized_expired_and_future_adverts_are_rejected() {
        let kp = Keypair::generate(&mut SeedTree::new(1).rng());
        let other = Keypair::generate(&mut SeedTree::new(2).rng());
        let now = Timestamp::from_secs(1000);
        let ttl = Duration::from_secs(60);

        let mut forged = SignedAdvert::sign(&kp, advert(&kp, now));
        forged.advert.resources.cores = 64;
        assert_eq!(forged.verify(now, ttl), Err(AdvertError::Forged));

        let mut stolen = SignedAdvert::sign(&kp, advert(&kp, now));
        stolen.advert.peer_id = other.peer_id();
        assert_eq!(stolen.verify(now, ttl), Err(AdvertError::Forged));

        let mut big = advert(&kp, now);
        big.listen_addrs = vec!["/x".into(); ADVERT_ADDRS_MAX + 1];
        let big = SignedAdvert::sign(&kp, big);
        assert!(matches!(
            big.verify(now, ttl),
            Err(AdvertError::Oversized(_))
        ));

        let mut many = advert(&kp, now);
        many.executors = vec!["docker".into(); ADVERT_EXECUTORS_MAX + 1];
        let many = SignedAdvert::sign(&kp, many);
        assert_eq!(
            many.verify(now, ttl),
            Err(AdvertError::Oversized("too many executors"))
        );
        let mut long = advert(&kp, now);
        long.executors = vec!["x".repeat(ADVERT_EXECUTOR_BYTES_MAX + 1)];
        let long = SignedAdvert::sign(&kp, long);
        assert_eq!(
            long.verify(now, ttl),
            Err(AdvertError::Oversized("executor name too long"))
        );

        let old = SignedAdvert::sign(&kp, advert(&kp, Timestamp::from_secs(900)));
        assert_eq!(old.verify(now, ttl), Err(AdvertError::Expired));

        let future = SignedAdvert::sign(&kp, advert(&kp, Timestamp::from_secs(1200)));
        assert_eq!(future.verify(now, ttl), Err(AdvertError::FromTheFuture));

        let mut v2 = advert(&kp, now);
        v2.protocol_version = PROTOCOL_VERSION + 1;
        let v2 = SignedAdvert::sign(&kp, v2);
        assert!(matches!(v2.verify(now, ttl), Err(AdvertError::Version(_))));
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::seed::SeedTree;

    #[test]
    fn cache_accepts_only_the_identical_advert() {
        let kp = Keypair::generate(&mut SeedTree::new(1).rng());
        let now = Timestamp::from_secs(1000);
        let ttl = Duration::from_secs(60);
        let good = Arc::new(SignedAdvert::sign(
            &kp,
            Advert {
                protocol_version: PROTOCOL_VERSION,
                peer_id: kp.peer_id(),
                listen_addrs: vec![],
                resources: Resources::default(),
                region: None,
                started_at: now,
                timestamp: now,
                executors: Vec::new(),
            },
        ));
        let cache = VerifiedAdverts::new(1);
        assert_eq!(cache.verify(&good, now, ttl), Ok(()));
        assert_eq!(cache.len(), 1);
        let mut forged = (*good).clone();
        forged.advert.resources.cores = 99;
        let forged = Arc::new(forged);
        assert_eq!(cache.verify(&forged, now, ttl), Err(AdvertError::Forged));
        // An identical advert in another allocation is a hit too.
        let copy = Arc::new((*good).clone());
        assert_eq!(cache.verify(&copy, now, ttl), Ok(()));
        assert_eq!(cache.len(), 1);
        // Cached adverts still expire.
        let later = now + Duration::from_secs(120);
        assert_eq!(cache.verify(&good, later, ttl), Err(AdvertError::Expired));
    }
}
