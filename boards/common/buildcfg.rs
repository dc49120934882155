//! The boards' build-time configuration: `P2PSC_*` environment variables → `$OUT_DIR/config.rs`.
//!
//! Included by every board's `build.rs` (through `#[path]`) and by the mps2-an386 library's host tests,
//! so the parsing that decides what a firmware image contains is tested like any other code.
//!
//! | variable | meaning | TEST default |
//! |---|---|---|
//! | `P2PSC_KEY_FILE` | this device's Ed25519 private key: a PKCS#8 file, PEM or DER (`p2psc keygen`, `openssl genpkey -algorithm ed25519`) | — |
//! | `P2PSC_KEY_SEED` | or its secret seed, 64 hex (`p2psc seed KEY`) | `a1` × 32 |
//! | `P2PSC_PEER_KEY_FILE` | the peer's Ed25519 public key: a SubjectPublicKeyInfo file, PEM or DER (`openssl pkey -in KEY -pubout`) | — |
//! | `P2PSC_PEER_KEY` | or the public key itself, 64 hex (`p2psc pubkey KEY`) | public key of seed `b2` × 32 |
//! | `P2PSC_MEDIATOR` | mediator `IPv4:port` | `203.0.113.10:7777` |
//! | `P2PSC_IPV4` | own `address/prefix`, or `dhcp` | per board |
//! | `P2PSC_GATEWAY` | default gateway, or `none` (ignored with DHCP) | per board |
//! | `P2PSC_MAC` | MAC address, or empty for the board's default | per board |
//! | `P2PSC_ENTROPY_SECRET` | secret mixed into boot entropy on boards without a TRNG, 64 hex | fixed |
//! | `P2PSC_WIFI_SSID` | Wi-Fi boards ([`wifi_from_env`]): the WPA2 network's SSID, 1–32 bytes | `p2psc-test` |
//! | `P2PSC_WIFI_PASSPHRASE` | its passphrase, 8–63 printable ASCII characters | `p2psc-test-only` |
//!
//! A key file path is taken from the board's directory (where its `Cargo.toml` is) unless absolute;
//! a file and its hex variable exclude each other. Key files are read with the RustCrypto `ed25519`
//! crate (build dependency) and only their 32-byte seed or public key goes into the image: the
//! firmware parses nothing at boot.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use ed25519::pkcs8::{DecodePrivateKey, DecodePublicKey, KeypairBytes, PublicKeyBytes};

/// TEST keys: seed [0xA1; 32] for the device, and the public key of seed [0xB2; 32] for its peer
/// (what scripts/board-e2e.sh gives the host peer).
pub const TEST_KEY_SEED: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
/// Public key of the seed [0xB2; 32].
pub const TEST_PEER_KEY: &str = "55154f42065ea5a1bea05463826be2684eb92df92c100027aabaae57ca554207";
/// Entropy secret of TEST builds.
pub const TEST_ENTROPY_SECRET: &str =
    "7e577e577e577e577e577e577e577e577e577e577e577e577e577e577e577e57";

/// A board's defaults for the addressing variables.
pub struct Defaults {
    /// `P2PSC_IPV4`: `address/prefix` or `dhcp`.
    pub ipv4: &'static str,
    /// `P2PSC_GATEWAY`.
    pub gateway: &'static str,
    /// `P2PSC_MAC`.
    pub mac: &'static str,
}

/// The configuration, parsed.
struct Values {
    defaulted: Vec<&'static str>,
    key_seed: [u8; 32],
    peer_key: [u8; 32],
    mediator: ([u8; 4], u16),
    ipv4: Option<([u8; 4], u8)>,
    gateway: Option<[u8; 4]>,
    mac: Option<[u8; 6]>,
    entropy_secret: [u8; 32],
}

/// The variables, through a lookup that returns `None` for an unset one; remembers which ones were
/// left at their defaults.
struct Vars<G> {
    get: G,
    defaulted: Vec<&'static str>,
}

impl<G: FnMut(&str) -> Option<String>> Vars<G> {
    fn get(&mut self, name: &str) -> Option<String> {
        (self.get)(name)
    }

    fn or_default(&mut self, name: &'static str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            self.defaulted.push(name);
            default.to_string()
        })
    }

    /// A 32-byte key given either as a file (`file_var`, parsed by `parse`) or as 64 hex digits
    /// (`hex_var`, or `default`), not both.
    fn key(
        &mut self,
        (file_var, hex_var): (&'static str, &'static str),
        default: &str,
        read: &mut impl FnMut(&str) -> Result<Vec<u8>, String>,
        parse: fn(&[u8]) -> Result<[u8; 32], String>,
    ) -> Result<[u8; 32], String> {
        let Some(path) = self.get(file_var) else {
            return hex32(&self.or_default(hex_var, default))
                .map_err(|e| format!("{hex_var}: {e}"));
        };
        if self.get(hex_var).is_some() {
            return Err(format!("{file_var} and {hex_var} are both set; set one"));
        }
        read(&path)
            .and_then(|bytes| parse(&bytes))
            .map_err(|e| format!("{file_var} ({path}): {e}"))
    }
}

/// Read the variables (through `get`, which returns `None` for an unset one) and the key files they
/// name (through `read`), and return the Rust source of the `config` module, or a message naming the
/// bad variable.
pub fn generate(
    defaults: &Defaults,
    get: impl FnMut(&str) -> Option<String>,
    mut read: impl FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<String, String> {
    let mut vars = Vars {
        get,
        defaulted: Vec::new(),
    };
    let ctx = |name: &'static str| move |e: String| format!("{name}: {e}");
    let key_seed = vars.key(
        ("P2PSC_KEY_FILE", "P2PSC_KEY_SEED"),
        TEST_KEY_SEED,
        &mut read,
        seed_of_key_file,
    )?;
    let peer_key = vars.key(
        ("P2PSC_PEER_KEY_FILE", "P2PSC_PEER_KEY"),
        TEST_PEER_KEY,
        &mut read,
        public_key_of_key_file,
    )?;
    let mediator = endpoint(&vars.or_default("P2PSC_MEDIATOR", "203.0.113.10:7777"))
        .map_err(ctx("P2PSC_MEDIATOR"))?;
    let ipv4 = match vars.or_default("P2PSC_IPV4", defaults.ipv4).trim() {
        "dhcp" => None,
        text => Some(cidr(text).map_err(ctx("P2PSC_IPV4"))?),
    };
    let gateway = gateway(&vars.or_default("P2PSC_GATEWAY", defaults.gateway))
        .map_err(ctx("P2PSC_GATEWAY"))?;
    let mac = mac(&vars.or_default("P2PSC_MAC", defaults.mac)).map_err(ctx("P2PSC_MAC"))?;
    let entropy_secret = hex32(&vars.or_default("P2PSC_ENTROPY_SECRET", TEST_ENTROPY_SECRET))
        .map_err(ctx("P2PSC_ENTROPY_SECRET"))?;
    Ok(render(&Values {
        defaulted: vars.defaulted,
        key_seed,
        peer_key,
        mediator,
        ipv4,
        gateway,
        mac,
        entropy_secret,
    }))
}

/// The `config` module's source.
fn render(v: &Values) -> String {
    let test_keys = hex32(TEST_KEY_SEED) == Ok(v.key_seed);
    let ipv4 = match v.ipv4 {
        Some((a, p)) => format!("Some(({}, {p}))", bytes_literal(&a)),
        None => "None".to_string(),
    };
    let items = [
        (
            "True when the device key is the public TEST default.",
            format!("pub const TEST_KEYS: bool = {test_keys};"),
        ),
        (
            "Variables left at their defaults.",
            format!("pub const DEFAULTED: &[&str] = &{:?};", v.defaulted),
        ),
        (
            "This device's Ed25519 secret seed.",
            format!(
                "pub const KEY_SEED: [u8; 32] = {};",
                bytes_literal(&v.key_seed)
            ),
        ),
        (
            "The peer's Ed25519 public key.",
            format!(
                "pub const PEER_KEY: [u8; 32] = {};",
                bytes_literal(&v.peer_key)
            ),
        ),
        (
            "The mediator's IPv4 address.",
            format!(
                "pub const MEDIATOR_ADDR: [u8; 4] = {};",
                bytes_literal(&v.mediator.0)
            ),
        ),
        (
            "The mediator's TCP port.",
            format!("pub const MEDIATOR_PORT: u16 = {};", v.mediator.1),
        ),
        (
            "Own IPv4 address and prefix length; `None`: DHCP.",
            format!("pub const IPV4: Option<([u8; 4], u8)> = {ipv4};"),
        ),
        (
            "Default gateway (static addressing).",
            format!(
                "pub const GATEWAY: Option<[u8; 4]> = {};",
                option_literal(v.gateway.as_ref().map(|g| &g[..]))
            ),
        ),
        (
            "MAC address (`None`: the board's default).",
            format!(
                "pub const MAC: Option<[u8; 6]> = {};",
                option_literal(v.mac.as_ref().map(|m| &m[..]))
            ),
        ),
        (
            "Secret mixed into the boot entropy on boards without a TRNG.",
            format!(
                "pub const ENTROPY_SECRET: [u8; 32] = {};",
                bytes_literal(&v.entropy_secret)
            ),
        ),
    ];
    let mut src =
        String::from("// Generated by build.rs from the P2PSC_* environment variables.\n");
    for (doc, item) in items {
        let _ = writeln!(src, "/// {doc}\n{item}");
    }
    src
}

/// Cargo build-script glue: [`generate`] from the environment and the files it names (with
/// `rerun-if-env-changed` and `rerun-if-changed` lines), panicking with the message on a bad value.
pub fn from_env(defaults: &Defaults) -> String {
    let get = |name: &str| {
        println!("cargo:rerun-if-env-changed={name}");
        std::env::var(name).ok()
    };
    let read = |path: &str| {
        println!("cargo:rerun-if-changed={path}");
        std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
    };
    match generate(defaults, get, read) {
        Ok(src) => src,
        Err(e) => panic!("bad build-time configuration: {e} (see the board's README.md)"),
    }
}

/// TEST Wi-Fi network of builds that set no `P2PSC_WIFI_*` variables (public, not a secret).
pub const TEST_WIFI_SSID: &str = "p2psc-test";
/// Passphrase of the TEST Wi-Fi network.
pub const TEST_WIFI_PASSPHRASE: &str = "p2psc-test-only";

/// The Wi-Fi boards' extra `config` items: `WIFI_SSID`, `WIFI_PASSPHRASE` and `TEST_WIFI`, from
/// `P2PSC_WIFI_SSID` and `P2PSC_WIFI_PASSPHRASE` (through `get`), or a message naming the bad one.
pub fn generate_wifi(mut get: impl FnMut(&str) -> Option<String>) -> Result<String, String> {
    let ssid = get("P2PSC_WIFI_SSID").unwrap_or_else(|| TEST_WIFI_SSID.to_string());
    let passphrase =
        get("P2PSC_WIFI_PASSPHRASE").unwrap_or_else(|| TEST_WIFI_PASSPHRASE.to_string());
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(format!(
            "P2PSC_WIFI_SSID: expected 1 to 32 bytes, got {}",
            ssid.len()
        ));
    }
    // WPA2-Personal: 8 to 63 printable ASCII characters (IEEE 802.11i, annex H.4).
    let printable = passphrase.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if !(8..=63).contains(&passphrase.len()) || !printable {
        return Err(
            "P2PSC_WIFI_PASSPHRASE: expected 8 to 63 printable ASCII characters".to_string(),
        );
    }
    let test = ssid == TEST_WIFI_SSID;
    Ok(format!(
        "/// True when the Wi-Fi network is the TEST default.\n\
         pub const TEST_WIFI: bool = {test};\n\
         /// The WPA2 network to join.\n\
         pub const WIFI_SSID: &str = {ssid:?};\n\
         /// Its passphrase.\n\
         pub const WIFI_PASSPHRASE: &str = {passphrase:?};\n"
    ))
}

/// Cargo build-script glue for [`generate_wifi`], like [`from_env`].
pub fn wifi_from_env() -> String {
    let get = |name: &str| {
        println!("cargo:rerun-if-env-changed={name}");
        std::env::var(name).ok()
    };
    match generate_wifi(get) {
        Ok(src) => src,
        Err(e) => panic!("bad build-time configuration: {e} (see the board's README.md)"),
    }
}

/// Whether a key file is PEM text rather than DER.
fn is_pem(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(b"-----BEGIN ")
}

/// The seed of an Ed25519 private key file: PKCS#8 (v1 or v2), PEM or DER. A v2 key's public key
/// must be the one its seed derives, as `p2psc::identity::Keypair` requires.
pub fn seed_of_key_file(bytes: &[u8]) -> Result<[u8; 32], String> {
    let key = if is_pem(bytes) {
        let text = std::str::from_utf8(bytes).map_err(|_| "PEM file is not text".to_string())?;
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(
                "encrypted key; remove the password: openssl pkey -in KEY -out PLAIN".into(),
            );
        }
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            return Err("a public key; this needs the device's private key".into());
        }
        KeypairBytes::from_pkcs8_pem(text)
    } else {
        KeypairBytes::from_pkcs8_der(bytes)
    }
    .map_err(|e| format!("not an Ed25519 PKCS#8 private key ({e})"))?;
    let derived = salty::Keypair::from(&key.secret_key).public.to_bytes();
    match key.public_key {
        Some(public) if public.to_bytes() != derived => {
            Err("its public key is not the one its private key derives".into())
        }
        _ => Ok(key.secret_key),
    }
}

/// The key of an Ed25519 public key file: SubjectPublicKeyInfo, PEM or DER.
pub fn public_key_of_key_file(bytes: &[u8]) -> Result<[u8; 32], String> {
    let key = if is_pem(bytes) {
        let text = std::str::from_utf8(bytes).map_err(|_| "PEM file is not text".to_string())?;
        if text.contains("PRIVATE KEY-----") {
            return Err("a private key; this takes the peer's public key \
                        (openssl pkey -in KEY -pubout, or P2PSC_PEER_KEY=$(p2psc pubkey KEY))"
                .into());
        }
        PublicKeyBytes::from_public_key_pem(text)
    } else {
        PublicKeyBytes::from_public_key_der(bytes)
    };
    key.map(|k| k.to_bytes())
        .map_err(|e| format!("not an Ed25519 SubjectPublicKeyInfo public key ({e})"))
}

/// 64 hex digits → 32 bytes.
pub fn hex32(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, got {} characters",
            text.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("not hex: {:?}", &text[2 * i..2 * i + 2]))?;
    }
    Ok(out)
}

/// Dotted quad → 4 bytes.
pub fn ipv4(text: &str) -> Result<[u8; 4], String> {
    let parts: Vec<&str> = text.trim().split('.').collect();
    if parts.len() != 4 {
        return Err(format!("not an IPv4 address: {text:?}"));
    }
    let mut out = [0u8; 4];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = p
            .parse()
            .map_err(|_| format!("not an IPv4 address: {text:?}"))?;
    }
    Ok(out)
}

/// `a.b.c.d/len` → address and prefix length.
pub fn cidr(text: &str) -> Result<([u8; 4], u8), String> {
    let (addr, len) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("expected ADDRESS/PREFIX, got {text:?}"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("bad prefix length in {text:?}"))?;
    if len > 32 {
        return Err(format!("prefix length over 32 in {text:?}"));
    }
    Ok((ipv4(addr)?, len))
}

/// `a.b.c.d:port` → address and port (port not 0).
pub fn endpoint(text: &str) -> Result<([u8; 4], u16), String> {
    let (addr, port) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("expected ADDRESS:PORT, got {text:?}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
    if port == 0 {
        return Err(format!("port 0 in {text:?}"));
    }
    Ok((ipv4(addr)?, port))
}

/// `none`/empty → no gateway; else an address.
pub fn gateway(text: &str) -> Result<Option<[u8; 4]>, String> {
    match text.trim() {
        "" | "none" => Ok(None),
        t => ipv4(t).map(Some),
    }
}

/// `52:54:00:12:34:56` → 6 bytes; `none`/empty → keep the NIC's own address.
pub fn mac(text: &str) -> Result<Option<[u8; 6]>, String> {
    let text = text.trim();
    if text.is_empty() || text == "none" {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("not a MAC address: {text:?}"));
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(format!("not a MAC address: {text:?}"));
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("not a MAC address: {text:?}"))?;
    }
    Ok(Some(out))
}

/// Rust source for a byte array constant's value.
pub fn bytes_literal(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(|b| format!("{b:#04x}")).collect();
    format!("[{}]", items.join(", "))
}

/// Rust source for an `Option` of a byte array.
pub fn option_literal(bytes: Option<&[u8]>) -> String {
    match bytes {
        Some(b) => format!("Some({})", bytes_literal(b)),
        None => "None".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_values() {
        assert_eq!(hex32(&"a1".repeat(32)).unwrap(), [0xA1; 32]);
        assert_eq!(hex32(&"Ab".repeat(32)).unwrap(), [0xAB; 32]);
        assert_eq!(ipv4("203.0.113.10").unwrap(), [203, 0, 113, 10]);
        assert_eq!(cidr("10.0.1.2/24").unwrap(), ([10, 0, 1, 2], 24));
        assert_eq!(
            endpoint("203.0.113.10:7777").unwrap(),
            ([203, 0, 113, 10], 7777)
        );
        assert_eq!(gateway("none").unwrap(), None);
        assert_eq!(gateway("10.0.1.1").unwrap(), Some([10, 0, 1, 1]));
        assert_eq!(
            mac("52:54:00:aa:BB:02").unwrap(),
            Some([0x52, 0x54, 0, 0xAA, 0xBB, 2])
        );
        assert_eq!(mac("").unwrap(), None);
        assert_eq!(bytes_literal(&[1, 0xff]), "[0x01, 0xff]");
        assert_eq!(option_literal(None), "None");
    }

    /// Key files made by OpenSSL (tests/fixtures/README.md), by name.
    const KEY_FILES: &[(&str, &[u8])] = &[
        (
            "alice.pem",
            include_bytes!("../../tests/fixtures/alice.pem"),
        ),
        (
            "alice.der",
            include_bytes!("../../tests/fixtures/alice.der"),
        ),
        (
            "alice.pub.pem",
            include_bytes!("../../tests/fixtures/alice.pub.pem"),
        ),
        (
            "alice.pub.der",
            include_bytes!("../../tests/fixtures/alice.pub.der"),
        ),
        (
            "alice.encrypted.pem",
            include_bytes!("../../tests/fixtures/alice.encrypted.pem"),
        ),
        (
            "x25519.pem",
            include_bytes!("../../tests/fixtures/x25519.pem"),
        ),
        (
            "x25519.pub.der",
            include_bytes!("../../tests/fixtures/x25519.pub.der"),
        ),
        (
            "rfc8410-v2.der",
            include_bytes!("../../tests/fixtures/rfc8410-v2.der"),
        ),
    ];
    /// alice.pem's seed (`openssl pkey -in alice.pem -outform DER | tail -c 32`) and public key.
    const ALICE_SEED: &str = "b80947d8b4b3004e706df0293ed66e7d4317ce5aaf3444085394db90c33e2a33";
    const ALICE_PUBLIC: &str = "7dccfdb9cae36575907dbfd97ae050fb185d400f8617a29844d7c5e037f632d6";

    fn gen(vars: &[(&str, &str)]) -> Result<String, String> {
        let defaults = Defaults {
            ipv4: "192.168.1.2/24",
            gateway: "192.168.1.1",
            mac: "",
        };
        let get = |n: &str| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let read = |path: &str| match KEY_FILES.iter().find(|(name, _)| *name == path) {
            Some((_, bytes)) => Ok(bytes.to_vec()),
            None => Err("cannot read it: no such file".to_string()),
        };
        generate(&defaults, get, read)
    }

    fn line(name: &str, hex: &str) -> String {
        format!(
            "pub const {name}: [u8; 32] = {};",
            bytes_literal(&hex32(hex).unwrap())
        )
    }

    #[test]
    fn key_files_pem_and_der() {
        for (private, public) in [
            ("alice.pem", "alice.pub.pem"),
            ("alice.der", "alice.pub.der"),
        ] {
            let src = gen(&[("P2PSC_KEY_FILE", private), ("P2PSC_PEER_KEY_FILE", public)]).unwrap();
            assert!(src.contains(&line("KEY_SEED", ALICE_SEED)), "{src}");
            assert!(src.contains(&line("PEER_KEY", ALICE_PUBLIC)), "{src}");
            assert!(src.contains("pub const TEST_KEYS: bool = false;"));
            assert!(!src.contains("\"P2PSC_KEY_SEED\""), "not defaulted");
            assert!(!src.contains("\"P2PSC_PEER_KEY\""), "not defaulted");
        }
        // PKCS#8 v2 with its public key (RFC 8410 §10.3).
        let src = gen(&[("P2PSC_KEY_FILE", "rfc8410-v2.der")]).unwrap();
        let rfc_seed = "d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842";
        assert!(src.contains(&line("KEY_SEED", rfc_seed)), "{src}");
    }

    #[test]
    fn bad_key_files() {
        let fails = |vars: &[(&str, &str)], variable: &str, says: &str| {
            let err = gen(vars).unwrap_err();
            assert!(err.starts_with(variable) && err.contains(says), "{err}");
        };
        let both = [
            ("P2PSC_KEY_FILE", "alice.pem"),
            ("P2PSC_KEY_SEED", ALICE_SEED),
        ];
        fails(&both, "P2PSC_KEY_FILE and P2PSC_KEY_SEED", "set one");
        fails(
            &[("P2PSC_KEY_FILE", "nowhere.pem")],
            "P2PSC_KEY_FILE (nowhere.pem)",
            "cannot read",
        );
        fails(
            &[("P2PSC_KEY_FILE", "alice.pub.pem")],
            "P2PSC_KEY_FILE",
            "a public key",
        );
        fails(
            &[("P2PSC_KEY_FILE", "alice.pub.der")],
            "P2PSC_KEY_FILE",
            "not an Ed25519 PKCS#8",
        );
        fails(
            &[("P2PSC_KEY_FILE", "alice.encrypted.pem")],
            "P2PSC_KEY_FILE",
            "encrypted",
        );
        fails(
            &[("P2PSC_KEY_FILE", "x25519.pem")],
            "P2PSC_KEY_FILE",
            "not an Ed25519",
        );
        fails(
            &[("P2PSC_PEER_KEY_FILE", "alice.pem")],
            "P2PSC_PEER_KEY_FILE",
            "a private key",
        );
        fails(
            &[("P2PSC_PEER_KEY_FILE", "alice.der")],
            "P2PSC_PEER_KEY_FILE",
            "not an Ed25519",
        );
        fails(
            &[("P2PSC_PEER_KEY_FILE", "x25519.pub.der")],
            "P2PSC_PEER_KEY_FILE",
            "not an Ed25519",
        );

        // A v2 key whose public key is not its own: its last byte is the public key's.
        let (_, rfc8410_v2) = KEY_FILES
            .iter()
            .find(|(name, _)| *name == "rfc8410-v2.der")
            .unwrap();
        let mut lying = rfc8410_v2.to_vec();
        *lying.last_mut().unwrap() ^= 1;
        let err = seed_of_key_file(&lying).unwrap_err();
        assert!(err.contains("not the one its private key derives"), "{err}");
    }

    #[test]
    fn generates_test_defaults() {
        let src = gen(&[]).unwrap();
        assert!(src.contains("pub const TEST_KEYS: bool = true;"));
        assert!(src.contains("pub const KEY_SEED: [u8; 32] = [0xa1, 0xa1,"));
        assert!(src.contains("pub const PEER_KEY: [u8; 32] = [0x55, 0x15, 0x4f,"));
        assert!(src.contains("pub const MEDIATOR_ADDR: [u8; 4] = [0xcb, 0x00, 0x71, 0x0a];"));
        assert!(src.contains("pub const MEDIATOR_PORT: u16 = 7777;"));
        assert!(src.contains(
            "pub const IPV4: Option<([u8; 4], u8)> = Some(([0xc0, 0xa8, 0x01, 0x02], 24));"
        ));
        assert!(src.contains("pub const MAC: Option<[u8; 6]> = None;"));
    }

    #[test]
    fn generates_from_variables() {
        let seed = "01".repeat(32);
        let src = gen(&[
            ("P2PSC_KEY_SEED", &seed),
            ("P2PSC_IPV4", "dhcp"),
            ("P2PSC_MEDIATOR", "198.51.100.7:4000"),
        ])
        .unwrap();
        assert!(src.contains("pub const TEST_KEYS: bool = false;"));
        assert!(src.contains("pub const IPV4: Option<([u8; 4], u8)> = None;"));
        assert!(src.contains("pub const MEDIATOR_PORT: u16 = 4000;"));
        assert!(
            !src.contains("\"P2PSC_KEY_SEED\""),
            "not listed as defaulted"
        );
        let err = gen(&[("P2PSC_PEER_KEY", "abc")]).unwrap_err();
        assert!(err.starts_with("P2PSC_PEER_KEY: "), "{err}");
    }

    #[test]
    fn wifi_settings() {
        let wifi = |vars: &[(&str, &str)]| {
            generate_wifi(|n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            })
        };
        let src = wifi(&[]).unwrap();
        assert!(src.contains("pub const TEST_WIFI: bool = true;"), "{src}");
        assert!(
            src.contains("pub const WIFI_SSID: &str = \"p2psc-test\";"),
            "{src}"
        );
        let src = wifi(&[
            ("P2PSC_WIFI_SSID", "home \"net\""),
            ("P2PSC_WIFI_PASSPHRASE", "correct horse"),
        ])
        .unwrap();
        assert!(src.contains("pub const TEST_WIFI: bool = false;"), "{src}");
        assert!(
            src.contains(r#"pub const WIFI_SSID: &str = "home \"net\"";"#),
            "{src}"
        );
        assert!(src.contains("pub const WIFI_PASSPHRASE: &str = \"correct horse\";"));
        for bad in [
            [
                ("P2PSC_WIFI_SSID", ""),
                ("P2PSC_WIFI_PASSPHRASE", "12345678"),
            ],
            [
                ("P2PSC_WIFI_SSID", &"x".repeat(33)),
                ("P2PSC_WIFI_PASSPHRASE", "12345678"),
            ],
            [
                ("P2PSC_WIFI_SSID", "net"),
                ("P2PSC_WIFI_PASSPHRASE", "1234567"),
            ],
            [
                ("P2PSC_WIFI_SSID", "net"),
                ("P2PSC_WIFI_PASSPHRASE", &"x".repeat(64)),
            ],
            [
                ("P2PSC_WIFI_SSID", "net"),
                ("P2PSC_WIFI_PASSPHRASE", "tab\there!"),
            ],
        ] {
            let err = wifi(&bad).unwrap_err();
            assert!(err.starts_with("P2PSC_WIFI_"), "{err}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!(hex32(&"a1".repeat(31)).is_err());
        assert!(hex32(&"g1".repeat(32)).is_err());
        assert!(ipv4("10.0.1").is_err());
        assert!(ipv4("10.0.1.256").is_err());
        assert!(cidr("10.0.1.2").is_err());
        assert!(cidr("10.0.1.2/33").is_err());
        assert!(endpoint("203.0.113.10").is_err());
        assert!(endpoint("203.0.113.10:0").is_err());
        assert!(endpoint("203.0.113.10:70000").is_err());
        assert!(mac("52:54:00:aa:bb").is_err());
        assert!(mac("52:54:00:aa:bb:2").is_err());
    }
}
