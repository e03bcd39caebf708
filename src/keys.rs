//! ed25519 identities: miners and validators sign handshakes, receipts,
//! transcripts and ledger entries with them.
//!
//! A key file holds the 32-byte secret seed as 64 hex characters (one line),
//! mode 0600; the public key is printed and shared as 64 hex characters.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("{path} is readable by others (mode {mode:o}); run chmod 600 {path}")]
    Permissions { path: String, mode: u32 },
    #[error("invalid public key '{0}': expected 64 hex characters of an ed25519 key")]
    PublicKey(String),
    #[error("invalid signature encoding")]
    SignatureEncoding,
    #[error("signature does not verify")]
    BadSignature,
}

/// A secret key.
#[derive(Clone)]
pub struct Key(SigningKey);

impl Key {
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).expect("OS randomness");
        Key(SigningKey::from_bytes(&seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Key(SigningKey::from_bytes(&seed))
    }

    /// Reads a key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let p = path.display().to_string();
        let md = std::fs::metadata(path).map_err(|e| Error::File {
            path: p.clone(),
            why: e.to_string(),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = md.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::Permissions { path: p, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: p.clone(),
            why: e.to_string(),
        })?;
        let bytes = hex::decode(text.trim()).map_err(|_| Error::File {
            path: p.clone(),
            why: "not a dtrain key (64 hex characters)".into(),
        })?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| Error::File {
            path: p,
            why: "not a dtrain key (64 hex characters)".into(),
        })?;
        Ok(Key(SigningKey::from_bytes(&seed)))
    }

    /// Writes the key file (0600, atomically); refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let p = path.display().to_string();
        if path.exists() {
            return Err(Error::File {
                path: p,
                why: "exists; refusing to overwrite a key".into(),
            });
        }
        let io = |e: std::io::Error| Error::File {
            path: p.clone(),
            why: e.to_string(),
        };
        let mut f = crate::fsio::AtomicFile::create(path).map_err(io)?;
        #[cfg(unix)]
        f.set_mode(0o600).map_err(io)?;
        std::io::Write::write_all(
            &mut f,
            format!("{}\n", hex::encode(self.0.to_bytes())).as_bytes(),
        )
        .map_err(io)?;
        f.commit().map_err(io)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

/// A public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let b = hex::decode(s.trim()).map_err(|_| Error::PublicKey(s.into()))?;
        let b: [u8; 32] = b.try_into().map_err(|_| Error::PublicKey(s.into()))?;
        VerifyingKey::from_bytes(&b)
            .map(PublicKey)
            .map_err(|_| Error::PublicKey(s.into()))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    pub fn bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), Error> {
        let sig: [u8; 64] = sig.try_into().map_err(|_| Error::SignatureEncoding)?;
        self.0
            .verify_strict(msg, &Signature::from_bytes(&sig))
            .map_err(|_| Error::BadSignature)
    }

    pub fn verify_hex(&self, msg: &[u8], sig_hex: &str) -> Result<(), Error> {
        let sig = hex::decode(sig_hex).map_err(|_| Error::SignatureEncoding)?;
        self.verify(msg, &sig)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        PublicKey::from_hex(s)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_sign_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.key");
        let k = Key::generate();
        k.save(&p).unwrap();
        assert!(k.save(&p).is_err(), "never overwrites");
        let k2 = Key::load(&p).unwrap();
        assert_eq!(k.public(), k2.public());
        let sig = k2.sign(b"msg");
        k.public().verify(b"msg", &sig).unwrap();
        assert!(k.public().verify(b"other", &sig).is_err());
        let pk = PublicKey::from_hex(&k.public().to_hex()).unwrap();
        assert_eq!(pk, k.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(Key::load(&p), Err(Error::Permissions { .. })));
        }
    }
}
