//! Key files: `keygen`, `pubkey`, `seed`, and loading `--key`.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use ed25519::pkcs8::{DecodePrivateKey, KeypairBytes};
use p2psc::identity::{KeyError, Keypair, PublicKey};
use zeroize::{Zeroize, Zeroizing};

use crate::fail::{Class, Failure};
use crate::progress::{Progress, Record};

/// Largest file taken for a key: PEM keys are a few hundred bytes.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// `p2psc keygen`: a fresh key from the OS RNG, written as PKCS#8 PEM (mode 0600); returns the public key.
pub fn keygen(out: &Path, force: bool, progress: &Progress) -> Result<PublicKey, Failure> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(&mut seed[..])
        .map_err(|e| Failure::new(Class::LocalIo, format!("the OS RNG failed: {e}")))?;
    let keypair = Keypair::from_seed(&seed);
    let pem = keypair.to_pkcs8_pem();
    let write_error = |e: io::Error| {
        let message = match e.kind() {
            io::ErrorKind::AlreadyExists => format!(
                "key file {} exists; --force replaces it (the old key is then lost)",
                out.display()
            ),
            _ => format!("cannot write key file {}: {e}", out.display()),
        };
        Failure::new(Class::KeyFile, message)
    };
    if force {
        replace_private(out, pem.as_bytes()).map_err(write_error)?;
    } else {
        write_private(out, pem.as_bytes()).map_err(write_error)?;
    }
    let public_key = keypair.public_key();
    progress.report(Record::KeyWritten {
        file: out,
        public_key,
    });
    Ok(public_key)
}

/// Create `path` (it must not exist) readable by the owner only, and write `data` to disk.
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Write `data` to a new file beside `path`, then rename it over `path`: a reader sees the old key or
/// the new one, never half a key.
fn replace_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".new-{}", std::process::id()));
    let temporary = path.with_file_name(name);
    let _ = fs::remove_file(&temporary);
    write_private(&temporary, data)?;
    fs::rename(&temporary, path).inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}

/// Read a key file's text: a regular file (not a FIFO or device, which could block or never end), at
/// most [`MAX_KEY_FILE`] bytes, UTF-8. The text is wiped when dropped.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let fail = |what: String| Failure::new(Class::KeyFile, what);
    let shown = path.display();
    let meta =
        fs::metadata(path).map_err(|e| fail(format!("cannot read key file {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(fail(format!("key file {shown} is not a regular file")));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(fail(format!("{shown} is too large to be a key file")));
    }
    let bytes = Zeroizing::new(
        fs::read(path).map_err(|e| fail(format!("cannot read key file {shown}: {e}")))?,
    );
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(fail(format!("{shown} is not a PEM key file (not text)"))),
    }
}

/// Load `--key`: a PKCS#8 PEM Ed25519 private key.
pub fn load_keypair(path: &Path) -> Result<Keypair, Failure> {
    let text = read_key_file(path)?;
    Keypair::from_pkcs8_pem(&text).map_err(|e| {
        let shown = path.display();
        let message = match e {
            KeyError::Pem if PublicKey::from_public_key_pem(&text).is_ok() => format!(
                "key file {shown} holds a public key; --key needs the private key (p2psc keygen)"
            ),
            KeyError::Pem => format!("key file {shown} is not a PEM private key (p2psc keygen)"),
            e => format!("key file {shown}: {e}"),
        };
        Failure::new(Class::KeyFile, message)
    })
}

/// `p2psc pubkey`: the public key of a private key file, or of a public-key PEM.
pub fn public_key_of(path: &Path) -> Result<PublicKey, Failure> {
    let text = read_key_file(path)?;
    let shown = path.display();
    let key = match Keypair::from_pkcs8_pem(&text) {
        Ok(keypair) => Ok(keypair.public_key()),
        Err(KeyError::Pem) => PublicKey::from_public_key_pem(&text).map_err(|e| match e {
            KeyError::Pem => format!("{shown} is neither a PEM private key nor a public key"),
            e => format!("{shown}: {e}"),
        }),
        Err(e) => Err(format!("{shown}: {e}")),
    };
    key.map_err(|message| Failure::new(Class::KeyFile, message))
}

/// `p2psc seed`: the 32-byte secret seed of a private key file (what a firmware build takes as
/// `P2PSC_KEY_SEED`), as 64 hex digits.
pub fn seed_of(path: &Path) -> Result<Zeroizing<String>, Failure> {
    // Validated first, for the same messages as --key.
    load_keypair(path)?;
    let text = read_key_file(path)?;
    let mut bytes = KeypairBytes::from_pkcs8_pem(&text)
        .map_err(|e| Failure::new(Class::KeyFile, format!("key file {}: {e}", path.display())))?;
    let seed = Zeroizing::new(bytes.secret_key);
    // `ed25519` wipes its copy only with a feature p2psc leaves off.
    bytes.secret_key.zeroize();
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = Zeroizing::new(String::with_capacity(64));
    for byte in seed.iter() {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    Ok(hex)
}
