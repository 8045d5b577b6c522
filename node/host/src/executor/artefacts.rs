//! Job artefacts: the directory each job's container writes its results to, and who may
//! fetch them.
//!
//! Every container started for an allocation gets a writable bind mount at
//! [`CONTAINER_PATH`] (`/artefacts`) of the host directory
//! `<data dir>/artefacts/<allocation dir>/`. The transfer protocol serves `<data
//! dir>/artefacts`, so once the job has written `/artefacts/out.tar` its requester fetches
//! it as `<allocation dir>/out.tar`:
//!
//! ```sh
//! flotilla fetch <provider> d1-12D3KooW.../out.tar --out out.tar
//! ```
//!
//! The allocation directory is named after what the requester knows: its deployment number
//! and its own peer id, `d<deployment>-<requester peer id>` ([`dir_name`]). A provider holds
//! one allocation per deployment of a requester, so the name is unique on the provider; it
//! is made only of ASCII letters, digits and `-`. Because the requester is in the name, the
//! provider serves a name below such a directory to that peer alone ([`owner`]), also after
//! a restart.
//!
//! ```
//! use flotilla_core::{Keypair, SeedTree};
//! use flotilla_node::executor::artefacts::{dir_name, owner};
//!
//! let requester = Keypair::generate(&mut SeedTree::new(1).rng()).peer_id();
//! let dir = dir_name(&requester, 7);
//! assert_eq!(dir, format!("d7-{requester}"));
//! assert_eq!(owner(&dir), Some(requester));
//! assert_eq!(owner("results"), None);
//! ```

use std::path::Path;

use flotilla_core::PeerId;

/// Where a job's container sees its artefact directory.
pub const CONTAINER_PATH: &str = "/artefacts";

/// The artefact directory's name (under the provider's `<data dir>/artefacts`) for
/// deployment `deployment` of `requester`: `d<deployment>-<requester peer id>`.
pub fn dir_name(requester: &PeerId, deployment: u64) -> String {
    format!("d{deployment}-{requester}")
}

/// The requester whose artefact directory `component` (the first component of a served
/// name) is, if it is named like one ([`dir_name`]).
pub fn owner(component: &str) -> Option<PeerId> {
    let rest = component.strip_prefix('d')?;
    let (number, peer) = rest.split_once('-')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?;
    peer.parse().ok()
}

/// Creates the artefact directory `dir` (if missing) and makes it writable by anyone, so
/// that a container running as any user can write its results there. Blocks: call it off
/// the runtime.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    // The creation mode is cut by the umask; the container's user may be anyone.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::{Keypair, SeedTree};

    #[test]
    fn names_round_trip_and_others_are_not_artefact_directories() {
        let peer = Keypair::generate(&mut SeedTree::new(3).rng()).peer_id();
        let name = dir_name(&peer, 12);
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{name}"
        );
        assert_eq!(owner(&name), Some(peer));
        for other in [
            "d12",
            "d-x",
            "dx-abc",
            "x12-abc",
            "d12-not-a-peer",
            "d99999999999999999999999-abc",
            "",
        ] {
            assert_eq!(owner(other), None, "{other}");
        }
        let other = format!("d+1-{peer}");
        assert_eq!(owner(&other), None);
    }

    #[test]
    fn the_directory_is_created_writable_by_anyone() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d1-x");
        prepare(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        // Preparing it again keeps what is in it.
        std::fs::write(dir.join("out"), b"x").unwrap();
        prepare(&dir).unwrap();
        assert!(dir.join("out").exists());
    }
}
