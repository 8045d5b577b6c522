//! The files a node serves over the transfer protocol: a [`Shelf`] rooted in a directory,
//! plus names registered explicitly, and the rules every requested name must follow.
//!
//! A name may have directories (`job-42/out.tar`, `d1-<peer id>/logs/run.txt`). A name
//! whose first directory is a job's artefact directory (`d<deployment>-<requester>`, see
//! [`artefacts`](crate::executor::artefacts)) is served to that requester alone, and so is a
//! file that a symbolic link leads to inside one.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use flotilla_core::PeerId;
use sha2::{Digest, Sha256};

use super::Refusal;
use crate::executor::artefacts;

/// Longest file name accepted, in bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// File hashes remembered at most; the cache is emptied when it is full.
pub const HASH_CACHE_MAX: usize = 1024;
/// Buffer used while hashing a file.
const HASH_BUFFER_BYTES: usize = 64 * 1024;

/// Why a name is not a valid shelf name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty; give a file name such as `job-42/out.tar`")]
    Empty,
    /// The name is too long.
    #[error("the name has {0} bytes, more than {NAME_BYTES_MAX}; use a shorter name")]
    TooLong(usize),
    /// The name is an absolute path.
    #[error("`{0}` is absolute; names are relative to the shelf root, e.g. `job-42/out.tar`")]
    Absolute(String),
    /// A component is `.`, `..` or empty.
    #[error("`{0}` has an empty, `.` or `..` component; name the file without them")]
    BadComponent(String),
    /// The name has a backslash or a control character.
    #[error("`{0}` contains a backslash or a control character; use `/` between directories")]
    BadCharacter(String),
}

/// Checks that `name` is a relative path below a shelf root: `/`-separated components,
/// none of them empty, `.` or `..`, no backslash or control character, at most
/// [`NAME_BYTES_MAX`] bytes.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(NameError::TooLong(name.len()));
    }
    if name.starts_with('/') {
        return Err(NameError::Absolute(name.to_string()));
    }
    if name.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(NameError::BadCharacter(name.escape_debug().to_string()));
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(NameError::BadComponent(name.to_string()));
    }
    Ok(())
}

/// A file ready to be served: where it is, its size and the SHA-256 of its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of the whole file.
    pub sha256: [u8; 32],
}

/// The files served by the transfer protocol: every regular file under the root, and files
/// registered under a name (which may live anywhere). A registered name hides a file of the
/// same name under the root. Hashes are cached by path, size and modification time.
#[derive(Debug)]
pub struct Shelf {
    root: PathBuf,
    registered: Mutex<BTreeMap<String, PathBuf>>,
    hashes: Mutex<HashMap<PathBuf, Hashed>>,
}

/// A cached hash: the file's size and modification time when it was hashed, and the hash.
type Hashed = (u64, SystemTime, [u8; 32]);

impl Shelf {
    /// A shelf serving the files under `root`, creating the directory if needed.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Shelf> {
        std::fs::create_dir_all(root.as_ref())?;
        Ok(Shelf {
            root: root.as_ref().canonicalize()?,
            registered: Mutex::new(BTreeMap::new()),
            hashes: Mutex::new(HashMap::new()),
        })
    }

    /// The root directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves the file at `path` as `name` (replacing an earlier registration).
    pub fn register(&self, name: &str, path: impl Into<PathBuf>) -> Result<(), NameError> {
        check_name(name)?;
        lock(&self.registered).insert(name.to_string(), path.into());
        Ok(())
    }

    /// Stops serving `name` as a registered file; whether it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        lock(&self.registered).remove(name).is_some()
    }

    /// The file served as `name` to `asker`: a registered one, or a regular file under the
    /// root that does not leave it through a symbolic link. Names in another requester's
    /// artefact directory are refused.
    pub fn resolve(&self, name: &str, asker: &PeerId) -> Result<PathBuf, Refusal> {
        check_name(name).map_err(|e| Refusal::BadName(e.to_string()))?;
        let first = name.split('/').next().unwrap_or_default();
        if let Some(owner) = artefacts::owner(first)
            && owner != *asker
        {
            return Err(Refusal::NotRequester(format!(
                "`{name}` is in the artefact directory of {owner}'s deployment; only that peer \
                 may fetch it (ask for `d<deployment>-{asker}/...`, your own)"
            )));
        }
        if let Some(path) = lock(&self.registered).get(name) {
            return Ok(path.clone());
        }
        let path = match self.root.join(name).canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Refusal::NoSuchFile(name.to_string()));
            }
            Err(e) => return Err(Refusal::Unreadable(format!("{name}: {e}"))),
        };
        let Ok(inside) = path.strip_prefix(&self.root) else {
            return Err(Refusal::BadName(format!(
                "`{name}` leads outside the shelf through a symbolic link; ask for a file \
                 under the shelf"
            )));
        };
        let first = inside
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy());
        if let Some(owner) = first.as_deref().and_then(artefacts::owner)
            && owner != *asker
        {
            return Err(Refusal::NotRequester(format!(
                "`{name}` leads through a symbolic link into the artefact directory of {owner}'s \
                 deployment; only that peer may fetch it"
            )));
        }
        Ok(path)
    }

    /// Resolves `name` for `asker` and reads its size and hash (hashing the file unless its
    /// size and modification time are those of the cached hash). Blocks: call it off the
    /// runtime.
    pub fn open(&self, name: &str, asker: &PeerId) -> Result<Served, Refusal> {
        let path = self.resolve(name, asker)?;
        let unreadable = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Refusal::NoSuchFile(name.to_string()),
            _ => Refusal::Unreadable(format!("{name}: {e}")),
        };
        let meta = std::fs::metadata(&path).map_err(unreadable)?;
        if !meta.is_file() {
            return Err(Refusal::NoSuchFile(name.to_string()));
        }
        let (size, mtime) = (meta.len(), meta.modified().map_err(unreadable)?);
        if let Some(&(s, m, h)) = lock(&self.hashes).get(&path)
            && s == size
            && m == mtime
        {
            return Ok(Served {
                path,
                size,
                sha256: h,
            });
        }
        let sha256 = hash_file(&path).map_err(unreadable)?;
        let mut hashes = lock(&self.hashes);
        if hashes.len() >= HASH_CACHE_MAX {
            hashes.clear();
        }
        hashes.insert(path.clone(), (size, mtime, sha256));
        Ok(Served { path, size, sha256 })
    }
}

/// The SHA-256 of the file at `path`. Blocks.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or remove, so a poisoned map is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::{Keypair, SeedTree};

    fn peer(seed: u64) -> PeerId {
        Keypair::generate(&mut SeedTree::new(seed).rng()).peer_id()
    }

    /// A peer that requested nothing.
    fn anyone() -> PeerId {
        peer(99)
    }

    #[test]
    fn names_are_checked() {
        for good in [
            "out.tar",
            "job-42/ckpt.bin",
            "a/b/c",
            "with space",
            "..hidden",
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert!(matches!(
            check_name("/etc/passwd"),
            Err(NameError::Absolute(_))
        ));
        for bad in ["../x", "a/../../x", "a//b", "./a", "a/", "a/."] {
            assert!(
                matches!(check_name(bad), Err(NameError::BadComponent(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_name("a\\b"),
            Err(NameError::BadCharacter(_))
        ));
        assert!(matches!(
            check_name("a\nb"),
            Err(NameError::BadCharacter(_))
        ));
        let long = "x".repeat(NAME_BYTES_MAX + 1);
        assert_eq!(
            check_name(&long),
            Err(NameError::TooLong(NAME_BYTES_MAX + 1))
        );
    }

    #[test]
    fn resolves_under_the_root_and_registered_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let shelf = Shelf::new(dir.path().join("shelf")).unwrap();
        std::fs::create_dir(shelf.root().join("job")).unwrap();
        std::fs::write(shelf.root().join("job/out"), b"hello").unwrap();

        let served = shelf.open("job/out", &anyone()).unwrap();
        assert_eq!(served.size, 5);
        assert_eq!(served.sha256, <[u8; 32]>::from(Sha256::digest(b"hello")));
        assert!(matches!(
            shelf.open("job/none", &anyone()),
            Err(Refusal::NoSuchFile(_))
        ));
        assert!(matches!(
            shelf.open("job", &anyone()),
            Err(Refusal::NoSuchFile(_))
        ));
        assert!(matches!(
            shelf.open("../secret", &anyone()),
            Err(Refusal::BadName(_))
        ));

        std::os::unix::fs::symlink(outside.path().join("secret"), shelf.root().join("link"))
            .unwrap();
        let refused = shelf.open("link", &anyone()).unwrap_err();
        assert!(refused.to_string().contains("symbolic link"), "{refused}");

        shelf
            .register("ckpt", outside.path().join("secret"))
            .unwrap();
        assert_eq!(shelf.open("ckpt", &anyone()).unwrap().size, 1);
        assert!(shelf.unregister("ckpt"));
        assert!(matches!(
            shelf.open("ckpt", &anyone()),
            Err(Refusal::NoSuchFile(_))
        ));
        assert!(shelf.register("../x", "/tmp/x").is_err());
    }

    #[test]
    fn artefact_directories_are_served_to_their_requester_alone() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = Shelf::new(dir.path()).unwrap();
        let (mine, theirs) = (peer(1), peer(2));
        let my_dir = crate::executor::artefacts::dir_name(&mine, 3);
        let their_dir = crate::executor::artefacts::dir_name(&theirs, 3);
        for d in [&my_dir, &their_dir] {
            std::fs::create_dir_all(shelf.root().join(d).join("logs")).unwrap();
            std::fs::write(shelf.root().join(d).join("out.txt"), d.as_bytes()).unwrap();
            std::fs::write(shelf.root().join(d).join("logs/run.txt"), b"run").unwrap();
        }
        std::fs::write(shelf.root().join("public.txt"), b"p").unwrap();

        // One level of directory, and deeper ones, for the requester.
        let name = format!("{my_dir}/out.txt");
        assert_eq!(check_name(&name), Ok(()));
        assert_eq!(shelf.open(&name, &mine).unwrap().size, my_dir.len() as u64);
        assert_eq!(
            shelf
                .open(&format!("{my_dir}/logs/run.txt"), &mine)
                .unwrap()
                .size,
            3
        );
        // Not for anybody else, whether the file exists or not.
        for asker in [theirs, anyone()] {
            for name in [format!("{my_dir}/out.txt"), format!("{my_dir}/none")] {
                let refused = shelf.open(&name, &asker).unwrap_err();
                assert!(
                    matches!(&refused, Refusal::NotRequester(m) if m.contains(&mine.to_string())),
                    "{refused}"
                );
            }
        }
        // Files outside artefact directories are for anyone.
        assert_eq!(shelf.open("public.txt", &theirs).unwrap().size, 1);
        // No way out of one's own directory into another's.
        for bad in [
            format!("{my_dir}/../{their_dir}/out.txt"),
            format!("{my_dir}/./out.txt"),
            format!("/{my_dir}/out.txt"),
        ] {
            assert!(
                matches!(shelf.open(&bad, &mine), Err(Refusal::BadName(_))),
                "{bad}"
            );
        }
        std::os::unix::fs::symlink(
            shelf.root().join(&their_dir).join("out.txt"),
            shelf.root().join(&my_dir).join("theirs"),
        )
        .unwrap();
        let refused = shelf.open(&format!("{my_dir}/theirs"), &mine).unwrap_err();
        assert!(
            matches!(&refused, Refusal::NotRequester(m) if m.contains("symbolic link")),
            "{refused}"
        );
        std::os::unix::fs::symlink("/etc/hostname", shelf.root().join(&my_dir).join("host"))
            .unwrap();
        assert!(matches!(
            shelf.open(&format!("{my_dir}/host"), &mine),
            Err(Refusal::BadName(_) | Refusal::NoSuchFile(_))
        ));
    }

    #[test]
    fn a_changed_file_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = Shelf::new(dir.path()).unwrap();
        let path = shelf.root().join("f");
        std::fs::write(&path, b"one").unwrap();
        let first = shelf.open("f", &anyone()).unwrap();
        std::fs::write(&path, b"longer").unwrap();
        let second = shelf.open("f", &anyone()).unwrap();
        assert_eq!(second.size, 6);
        assert_ne!(first.sha256, second.sha256);
    }
}
