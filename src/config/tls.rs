//! TLS material read from the files the config names: checked by `validate()` (so
//! `check-config` refuses a certificate that would not load) and loaded by the listener, at
//! start and on each reload.

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The crate's one crypto backend, aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A loaded certificate chain and key.
#[derive(Debug, Clone)]
pub struct Material {
    /// What the resolver serves.
    pub key: Arc<CertifiedKey>,
    /// The earliest notAfter in the chain (seconds since the Unix epoch): the chain stops
    /// being accepted when its first certificate expires, intermediate or leaf.
    pub expires: u64,
}

/// Reads a file the TLS config names, saying which one could not be read.
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// Loads and checks a PEM chain and key: at least one certificate, a key aws-lc-rs can sign
/// with, the key matching the leaf, and no certificate of the chain expired.
pub fn load_material(cert_file: &Path, key_file: &Path) -> Result<Material, String> {
    let certs = CertificateDer::pem_slice_iter(&read(cert_file, "certificate file")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in the file",
            cert_file.display()
        ));
    }
    // The key's text is never quoted in an error: it is a secret.
    let key = PrivateKeyDer::from_pem_slice(&read(key_file, "key file")?).map_err(|_| {
        format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file",
            key_file.display()
        )
    })?;
    let mut expires = u64::MAX;
    for (i, c) in certs.iter().enumerate() {
        let t = not_after(c).ok_or_else(|| {
            format!(
                "{}: certificate {} of the chain is not valid X.509",
                cert_file.display(),
                i + 1
            )
        })?;
        expires = expires.min(t);
    }
    if expires < unix_now() {
        return Err(format!(
            "{}: the chain has expired (notAfter {})",
            cert_file.display(),
            expires
        ));
    }
    let key = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        format!(
            "{} / {}: the key does not fit the certificate ({e})",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(Material {
        key: Arc::new(key),
        expires,
    })
}

/// Loads the CA certificate(s) client certificates must chain to.
pub fn load_client_roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_slice_iter(&read(path, "client CA file")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(roots)
}

/// A certificate's notAfter, in seconds since the Unix epoch (RFC 5280 §4.1: Certificate →
/// tbsCertificate → \[version\], serialNumber, signature, issuer, validity → notAfter).
/// webpki checks validity but does not expose it.
pub fn not_after(cert: &[u8]) -> Option<u64> {
    let (0x30, cert, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(cert)? else {
        return None;
    };
    let (tag, _, after_version) = der(tbs)?;
    let mut rest = if tag == 0xa0 { after_version } else { tbs };
    for _ in 0..3 {
        rest = der(rest)?.2; // serialNumber, signature, issuer
    }
    let (0x30, validity, _) = der(rest)? else {
        return None;
    };
    let (_, _, after_not_before) = der(validity)?;
    let (tag, time, _) = der(after_not_before)?;
    asn1_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as RFC 5280 §4.1.2.5
/// requires them, in seconds since the Unix epoch.
fn asn1_time(tag: u8, text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(0) };
    let (month, day, hour, min, sec) = (n(0), n(2), n(4), n(6), n(8));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + min * 60 + sec).ok()
}

/// One DER element of `input`: its tag, its contents and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times() {
        assert_eq!(asn1_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(asn1_time(0x18, b"20000301000000Z"), Some(951_868_800));
        assert_eq!(asn1_time(0x18, b"99991231235959Z"), Some(253_402_300_799));
        assert_eq!(asn1_time(0x17, b"700101000000"), None);
        assert_eq!(asn1_time(0x17, b"701301000000Z"), None);
        assert_eq!(asn1_time(0x18, b"2000030100000Z"), None);
    }
}
