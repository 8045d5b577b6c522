//! Conversions between the core's ids and addresses and libp2p's.
//!
//! The core's [`PeerId`] is byte-for-byte the libp2p peer id of an ed25519 key, so ids
//! convert through their multihash bytes. Peers with other key types can use libp2p's own
//! protocols (identify, kad, gossip) but never the core protocol. Core addresses are
//! multiaddr text without `/p2p/`; libp2p dials get `/p2p/<id>` appended when the peer is
//! known.

use flotilla_core::{BootstrapPeer, Keypair, PeerId};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// The core peer id of a libp2p peer, if it uses an ed25519 key.
pub fn core_peer(peer: &libp2p::PeerId) -> Option<PeerId> {
    PeerId::from_bytes(&peer.to_bytes()).ok()
}

/// The libp2p peer id of a core peer.
pub fn libp2p_peer(peer: &PeerId) -> Option<libp2p::PeerId> {
    libp2p::PeerId::from_bytes(&peer.to_bytes()).ok()
}

/// The libp2p key pair of a core key pair.
pub fn libp2p_keypair(keypair: &Keypair) -> Option<libp2p::identity::Keypair> {
    libp2p::identity::Keypair::ed25519_from_bytes(keypair.secret()).ok()
}

/// `addr` without a trailing `/p2p/<id>`, and that id if there was one.
pub fn split_p2p(addr: &Multiaddr) -> (Multiaddr, Option<libp2p::PeerId>) {
    let mut bare = addr.clone();
    match bare.pop() {
        Some(Protocol::P2p(peer)) => (bare, Some(peer)),
        _ => (addr.clone(), None),
    }
}

/// `addr` with `/p2p/<peer>` appended (replacing any id already there).
pub fn with_p2p(addr: &Multiaddr, peer: libp2p::PeerId) -> Multiaddr {
    split_p2p(addr).0.with(Protocol::P2p(peer))
}

/// A bootstrap multiaddr as the core wants it: the address without `/p2p/` and the peer id
/// when one was given (and is an ed25519 id).
pub fn bootstrap_peer(addr: &Multiaddr) -> BootstrapPeer {
    let (bare, peer) = split_p2p(addr);
    BootstrapPeer {
        addr: bare.to_string(),
        peer_id: peer.as_ref().and_then(core_peer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::SeedTree;

    #[test]
    fn core_and_libp2p_peer_ids_agree() {
        for seed in 0..8 {
            let core = Keypair::generate(&mut SeedTree::new(seed).rng());
            let lp = libp2p_keypair(&core).unwrap();
            let lp_id = lp.public().to_peer_id();
            assert_eq!(core.peer_id().to_string(), lp_id.to_string());
            assert_eq!(core_peer(&lp_id), Some(core.peer_id()));
            assert_eq!(libp2p_peer(&core.peer_id()), Some(lp_id));
        }
    }

    #[test]
    fn non_ed25519_peers_have_no_core_id() {
        assert_eq!(core_peer(&libp2p::PeerId::random()), None);
    }

    #[test]
    fn p2p_suffix_is_split_and_appended() {
        let core = Keypair::generate(&mut SeedTree::new(1).rng());
        let lp = libp2p_peer(&core.peer_id()).unwrap();
        let bare: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let full = with_p2p(&bare, lp);
        assert_eq!(
            full.to_string(),
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{lp}")
        );
        assert_eq!(split_p2p(&full), (bare.clone(), Some(lp)));
        assert_eq!(with_p2p(&full, lp), full);
        let b = bootstrap_peer(&full);
        assert_eq!(b.addr, "/ip4/127.0.0.1/tcp/4001");
        assert_eq!(b.peer_id, Some(core.peer_id()));
        assert_eq!(bootstrap_peer(&bare).peer_id, None);
    }
}
