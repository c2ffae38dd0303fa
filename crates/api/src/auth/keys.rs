//! Admin keys. `jangar keys generate` prints a new key and records only its
//! SHA-256 in `<data dir>/admin-keys`; keys may also come from the environment.
//! Checking a key compares hashes in constant time. A running server reads the
//! file again when told to (`reload`, which the server's credential watcher
//! calls a few times a second), so a revocation needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Environment variables that may hold an admin key (Jangar's own, then Convex's names).
pub const KEY_VARIABLES: &[&str] =
    &["JANGAR_ADMIN_KEY", "CONVEX_SELF_HOSTED_ADMIN_KEY", "CONVEX_ADMIN_KEY", "CONVEX_DEPLOY_KEY"];
const FILE_NAME: &str = "admin-keys";
const PREFIX: &str = "jangar_admin_";

type Hash = [u8; 32];

fn hash(key: &str) -> Hash {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal in time independent of where the inputs differ.
fn same(a: &Hash, b: &Hash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Makes a new key, records its hash, and returns the key (shown once, never stored).
pub fn generate(data_dir: &Path) -> Result<String, String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    let key = format!("{PREFIX}{}", hex(&secret));
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let path = key_file(data_dir);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!("{}\n", hex(&hash(&key))));
    write_private(&path, &text)?;
    Ok(key)
}

/// Removes a key (given whole) from the data directory's keys; false if it was not there.
pub fn revoke(data_dir: &Path, key: &str) -> Result<bool, String> {
    let path = key_file(data_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let target = hash(key.trim());
    let kept: Vec<&str> =
        text.lines().filter(|line| parse_hex(line.trim()).is_none_or(|h| !same(&h, &target))).collect();
    let revoked = kept.len() != text.lines().count();
    if revoked {
        let mut rest = kept.join("\n");
        if !rest.is_empty() {
            rest.push('\n');
        }
        write_private(&path, &rest)?;
    }
    Ok(revoked)
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    // Write then rename, so a reader never sees half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600));
    }
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The admin keys a server accepts.
pub struct AdminKeys {
    file: PathBuf,
    from_env: Vec<Hash>,
    /// The file's text when last read, and the keys in it.
    from_file: Mutex<(String, Vec<Hash>)>,
}

impl AdminKeys {
    /// Keys from the data directory's file and from `env` (the values of [`KEY_VARIABLES`] that are set).
    pub fn load(data_dir: &Path, env: &[String]) -> AdminKeys {
        let keys = AdminKeys {
            file: key_file(data_dir),
            from_env: env.iter().filter(|k| !k.trim().is_empty()).map(|k| hash(k.trim())).collect(),
            from_file: Mutex::new((String::new(), Vec::new())),
        };
        keys.reload();
        keys
    }

    /// The admin keys set in this process's environment.
    pub fn from_environment() -> Vec<String> {
        KEY_VARIABLES.iter().filter_map(|name| std::env::var(name).ok()).collect()
    }

    /// Reads the key file again; true when its keys changed. The text is compared, not the
    /// modification time: a key generated and revoked within one tick of a coarse clock must not
    /// stay accepted.
    pub(crate) fn reload(&self) -> bool {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut cached = self.from_file.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 == text {
            return false;
        }
        let keys = text.lines().filter_map(|l| parse_hex(l.trim())).collect();
        *cached = (text, keys);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.from_env.is_empty() && self.from_file.lock().unwrap_or_else(|p| p.into_inner()).1.is_empty()
    }

    pub(crate) fn accepts(&self, key: &str) -> bool {
        let candidate = hash(key.trim());
        let file = self.from_file.lock().unwrap_or_else(|p| p.into_inner());
        // Check every key, so the time taken does not tell which one matched.
        self.from_env.iter().chain(&file.1).fold(false, |found, known| same(known, &candidate) | found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        std::env::temp_dir().join(format!("jangar-keys-{}", u64::from_le_bytes(bytes)))
    }

    #[test]
    fn generated_keys_work_until_revoked_and_only_hashes_are_stored() {
        let dir = temp_dir();
        let first = generate(&dir).unwrap();
        let second = generate(&dir).unwrap();
        assert!(first.starts_with(PREFIX) && first != second);
        let stored = std::fs::read_to_string(key_file(&dir)).unwrap();
        assert!(!stored.contains(&first[PREFIX.len()..]), "the key itself is never written");
        let keys = AdminKeys::load(&dir, &[]);
        assert!(keys.accepts(&first) && keys.accepts(&second));
        assert!(!keys.accepts("jangar_admin_guess") && !keys.accepts(""));
        assert!(revoke(&dir, &first).unwrap());
        assert!(!revoke(&dir, &first).unwrap(), "already gone");
        // The running server's view follows the file once reloaded, however soon after the last read.
        assert!(keys.accepts(&first), "not before the reload");
        assert!(keys.reload());
        assert!(!keys.accepts(&first));
        assert!(keys.accepts(&second));
        assert!(!keys.reload(), "nothing changed since");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn environment_keys_are_accepted() {
        let dir = temp_dir();
        let keys = AdminKeys::load(&dir, &["from-env".to_owned(), String::new()]);
        assert!(!keys.is_empty());
        assert!(keys.accepts("from-env") && !keys.accepts("other"));
        assert!(AdminKeys::load(&dir, &[]).is_empty());
    }
}
