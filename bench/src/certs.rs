//! `loadgen gen-cert`: test certificates for the TLS benchmarks and tests, made with rcgen. One
//! CA (ECDSA P-256, self-signed) and one leaf per name set (ECDSA P-256, signed by the CA, the
//! names as subjectAltNames: DNS names, or IP addresses when they parse as one), written as
//! `ca.pem`, `<first name>.pem` (the leaf, then the CA: the chain a server sends) and
//! `<first name>.key` (PKCS#8 PEM, mode 0600). Fresh keys every call: nothing secret is kept.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// The files written for one leaf.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub names: Vec<String>,
    /// Leaf + CA, PEM.
    pub cert: PathBuf,
    /// PKCS#8 PEM.
    pub key: PathBuf,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub ca: PathBuf,
    pub leaves: Vec<Leaf>,
}

/// A name usable as a file name (and as a certificate name): letters, digits, `.`, `-`, `_`,
/// `*` (wildcards, written as `_wildcard`), `:` (IPv6).
fn file_stem(name: &str) -> Result<String, String> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | ':'))
    {
        return Err(format!("--names: {name:?} is not a DNS name or IP address"));
    }
    Ok(name.replace('*', "_wildcard"))
}

fn write_file(path: &Path, text: &str, private: bool) -> Result<(), String> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if private {
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a fresh CA and one leaf per name set into `dir` (created if missing).
pub fn generate(dir: &Path, name_sets: &[Vec<String>]) -> Result<Written, String> {
    if name_sets.is_empty() || name_sets.iter().any(Vec::is_empty) {
        return Err("--names: at least one name per leaf".into());
    }
    let mut stems = Vec::new();
    for names in name_sets {
        stems.push(file_stem(&names[0])?);
        for n in &names[1..] {
            file_stem(n)?;
        }
    }
    let err = |e: rcgen::Error| format!("rcgen: {e}");
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ringway bench test CA");
    dn.push(DnType::OrganizationName, "ringway-bench");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let ca_pem = ca.pem();
    let ca_path = dir.join("ca.pem");
    write_file(&ca_path, &ca_pem, false)?;

    let mut leaves = Vec::new();
    for (names, stem) in name_sets.iter().zip(stems) {
        let mut p = CertificateParams::new(names.clone()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].as_str());
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let cert = p.signed_by(&key, &ca, &ca_key).map_err(err)?;
        let leaf = Leaf {
            names: names.clone(),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        write_file(&leaf.cert, &format!("{}{ca_pem}", cert.pem()), false)?;
        write_file(&leaf.key, &key.serialize_pem(), true)?;
        leaves.push(leaf);
    }
    Ok(Written {
        ca: ca_path,
        leaves,
    })
}

/// `localhost,a.test+www.a.test,b.test` → one leaf per comma-separated entry, `+` joining the
/// names of one leaf.
pub fn parse_name_sets(s: &str) -> Vec<Vec<String>> {
    s.split(',')
        .map(|set| {
            set.split('+')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_sets() {
        assert_eq!(
            parse_name_sets("localhost,a.test+www.a.test"),
            vec![
                vec!["localhost".to_string()],
                vec!["a.test".to_string(), "www.a.test".to_string()]
            ]
        );
        assert!(file_stem("../x").is_err());
        assert_eq!(file_stem("*.a.test").unwrap(), "_wildcard.a.test");
    }

    #[test]
    fn writes_a_ca_and_leaves_that_load() {
        let dir = std::env::temp_dir().join(format!("rw-certs-{}", std::process::id()));
        let w = generate(&dir, &parse_name_sets("localhost+127.0.0.1,b.test")).unwrap();
        assert_eq!(crate::tls::load_certs(&w.ca).unwrap().len(), 1);
        assert_eq!(crate::tls::load_certs(&w.leaves[0].cert).unwrap().len(), 2);
        assert!(crate::tls::server_config(&w.leaves[1].cert, &w.leaves[1].key).is_ok());
        let mode = fs::metadata(&w.leaves[0].key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
