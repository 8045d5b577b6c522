//! The node's persistent identity: an ed25519 secret in `<data_dir>/node.key`.
//!
//! The file holds the 32-byte secret as 64 hex characters and a newline. It is created with
//! mode 0600 inside a data directory created with mode 0700; a key file that the group or
//! others can read is refused, because anyone who can read it can impersonate the node.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flotilla_core::Keypair;

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "node.key";
/// Permission bits the key file must not have: any access by group or others.
const KEY_MODE_FORBIDDEN: u32 = 0o077;

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {cause}; choose another one with --data-dir")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The key file could not be read or written.
    #[error("cannot access key file {path}: {cause}; check its owner and permissions")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The key file is readable by group or others.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:o}); \
         run `chmod 600 {path}` and start again"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file does not hold 64 hex characters.
    #[error(
        "key file {path} is not a flotilla key (expected 64 hex characters); restore it from a \
         backup, or move it away to create a new identity"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

/// Loads the key from `data_dir`, creating the directory and a fresh key if there is none.
/// Returns the key pair and whether it was created now.
pub fn load_or_create(data_dir: &Path) -> Result<(Keypair, bool), KeystoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|cause| KeystoreError::DataDir {
            path: data_dir.to_path_buf(),
            cause,
        })?;
    let path = data_dir.join(KEY_FILE);
    match std::fs::metadata(&path) {
        Ok(_) => load(&path).map(|k| (k, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path).map(|k| (k, true)),
        Err(cause) => Err(KeystoreError::Io { path, cause }),
    }
}

/// Loads an existing key file, refusing one that group or others can access.
pub fn load(path: &Path) -> Result<Keypair, KeystoreError> {
    let io = |cause| KeystoreError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
    if mode & KEY_MODE_FORBIDDEN != 0 {
        return Err(KeystoreError::Permissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let secret = decode_hex(text.trim()).ok_or_else(|| KeystoreError::Malformed {
        path: path.to_path_buf(),
    })?;
    Ok(Keypair::from_secret(secret))
}

/// Creates a fresh key file (mode 0600) at `path`; never overwrites an existing file.
fn create(path: &Path) -> Result<Keypair, KeystoreError> {
    let io = |cause| KeystoreError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let secret = fresh_secret();
    let tmp = path.with_extension("key.tmp");
    // A leftover from an interrupted start holds no key in use.
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(format!("{}\n", encode_hex(&secret)).as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    // `hard_link` fails if the key file appeared meanwhile, so a key is never replaced.
    std::fs::hard_link(&tmp, path).map_err(io)?;
    std::fs::remove_file(&tmp).map_err(io)?;
    Ok(Keypair::from_secret(secret))
}

/// 32 bytes from the operating system's random source.
fn fresh_secret() -> [u8; 32] {
    let key = libp2p::identity::ed25519::SecretKey::generate();
    let mut secret = [0u8; 32];
    secret.copy_from_slice(key.as_ref());
    secret
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_then_reloads_the_same_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (a, created) = load_or_create(&dir).unwrap();
        assert!(created);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        let (b, created) = load_or_create(&dir).unwrap();
        assert!(!created);
        assert_eq!(a.peer_id(), b.peer_id());
        assert!(!dir.join("node.key.tmp").exists());
    }

    #[test]
    fn refuses_a_key_readable_by_others() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, _) = load_or_create(tmp.path()).unwrap();
        let path = tmp.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(tmp.path()).unwrap_err();
        assert!(matches!(
            err,
            KeystoreError::Permissions { mode: 0o644, .. }
        ));
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", path.display()))
        );
    }

    #[test]
    fn refuses_a_malformed_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEY_FILE);
        std::fs::write(&path, "not a key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&path), Err(KeystoreError::Malformed { .. })));
    }

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(decode_hex(&encode_hex(&bytes)), Some(bytes));
        assert_eq!(decode_hex("zz"), None);
    }
}
