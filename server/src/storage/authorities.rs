//! Health authorities and their upload tokens. A token is shown once at creation; only its
//! SHA-256 is stored (tokens are 256 random bits, so a plain hash cannot be brute-forced).

use rand::RngCore;
use rocksdb::{IteratorMode, WriteBatch};
use sha2::{Digest, Sha256};

use super::records::Authority;
use super::{CF_AUTHORITIES, StorageError, Store, decode_record};

/// Prefix of every upload token, so a leaked token is recognisable in a secret scanner.
pub const TOKEN_PREFIX: &str = "exps_";

/// Returns the stored lookup key of a token.
fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new authority with its token, before it is stored.
pub struct NewAuthority {
    /// The record to store.
    pub authority: Authority,
    /// The token in clear: shown once, never stored.
    pub token: String,
    /// The token's SHA-256, the record's key.
    pub token_hash: [u8; 32],
}

/// Creates an authority record and a fresh random token for it.
pub fn new_authority(name: &str, regions: &[String], now: u64) -> NewAuthority {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let mut id_bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let authority = Authority {
        id: hex::encode(id_bytes),
        name: name.to_owned(),
        regions: regions.to_vec(),
        created_at: now,
        revoked_at: 0,
        ..Authority::default()
    };
    NewAuthority {
        authority,
        token_hash: token_hash(&token),
        token,
    }
}

impl Store {
    /// Creates an authority and returns it with its token (the only time the token exists
    /// in clear).
    pub fn add_authority(
        &self,
        name: &str,
        regions: &[String],
        now: u64,
    ) -> Result<(Authority, String), StorageError> {
        let new = new_authority(name, regions, now);
        self.put_authority(&new.token_hash, &new.authority)?;
        Ok((new.authority, new.token))
    }

    /// Stores an authority under its token hash.
    pub fn put_authority(
        &self,
        token_hash: &[u8],
        authority: &Authority,
    ) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_AUTHORITIES),
            token_hash,
            prost::Message::encode_to_vec(authority),
        );
        self.write_synced(batch)
    }

    /// Returns the authority a token belongs to, if the token is known and not revoked.
    pub fn authenticate(&self, token: &str) -> Result<Option<Authority>, StorageError> {
        let Some(value) = self
            .db()
            .get_pinned_cf(self.cf(CF_AUTHORITIES), token_hash(token))?
        else {
            return Ok(None);
        };
        let authority: Authority = decode_record(&value, CF_AUTHORITIES)?;
        Ok((authority.revoked_at == 0).then_some(authority))
    }

    /// Returns every authority, revoked ones included, sorted by creation time.
    pub fn list_authorities(&self) -> Result<Vec<Authority>, StorageError> {
        let mut authorities = Vec::new();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_AUTHORITIES), IteratorMode::Start)
        {
            let (_, value) = entry?;
            authorities.push(decode_record::<Authority>(&value, CF_AUTHORITIES)?);
        }
        authorities.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(authorities)
    }

    /// Returns the authority with `id` if it exists and is not revoked: a code upload's issuer
    /// must still be one (DESIGN §12).
    pub fn active_authority(&self, id: &str) -> Result<Option<Authority>, StorageError> {
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_AUTHORITIES), IteratorMode::Start)
        {
            let (_, value) = entry?;
            let authority: Authority = decode_record(&value, CF_AUTHORITIES)?;
            if authority.id == id && authority.revoked_at == 0 {
                return Ok(Some(authority));
            }
        }
        Ok(None)
    }

    /// Revokes the token of the authority with `id` and voids its unused upload codes in the
    /// same synced write (DESIGN §12); returns false when no such authority exists or it was
    /// already revoked.
    pub fn revoke_authority(&self, id: &str, now: u64) -> Result<bool, StorageError> {
        // Under the credential lock, so no group of code uploads checks a code of this
        // authority before this write and consumes it after.
        let _credentials = self.lock_credentials();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_AUTHORITIES), IteratorMode::Start)
        {
            let (key, value) = entry?;
            let mut authority: Authority = decode_record(&value, CF_AUTHORITIES)?;
            if authority.id == id && authority.revoked_at == 0 {
                authority.revoked_at = now;
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    self.cf(CF_AUTHORITIES),
                    key,
                    prost::Message::encode_to_vec(&authority),
                );
                let voided = self.void_unused_codes(&mut batch, id)?;
                self.write_synced(batch)?;
                tracing::info!(authority = %id, codes_voided = voided, "authority revoked");
                return Ok(true);
            }
        }
        Ok(false)
    }
}
