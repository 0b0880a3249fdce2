//! What the staff console (DESIGN.md section 13) keeps: staff accounts, their one-time
//! enrolment links, their sessions and the audit log, each in its own column family beside the
//! rest of the store, so backups and restores carry them. Secrets are stored only as what
//! checks them: an Argon2id hash of the password, the SHA-256 of enrolment and session tokens
//! (256 random bits each, so a plain hash cannot be brute-forced). The TOTP secret is stored as
//! it is, since every login needs it to compute the expected code.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;
use rocksdb::{IteratorMode, WriteBatch};
use sha2::{Digest, Sha256};

use super::{
    CF_CONSOLE_AUDIT, CF_CONSOLE_ENROLMENTS, CF_CONSOLE_SESSIONS, CF_CONSOLE_USERS, CF_META,
    StorageError, Store, decode_record,
};

/// Returns the meta key of an authority's count of console-issued codes of a day.
fn authority_codes_key(authority_id: &str) -> String {
    format!("console_codes/{authority_id}")
}

/// Role bit: manages the authority's users and reads its audit log.
pub const ROLE_ADMIN: u32 = 1;
/// Role bit: issues upload codes.
pub const ROLE_ISSUER: u32 = 2;
/// Role bit: reads the statistics.
pub const ROLE_VIEWER: u32 = 4;

/// A member of a health authority's staff.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConsoleUser {
    /// E-mail address, lower case: the login name and the record's key.
    #[prost(string, tag = "1")]
    pub email: String,
    /// Id of the authority the account belongs to.
    #[prost(string, tag = "2")]
    pub authority_id: String,
    /// Roles, as a combination of `ROLE_*` bits.
    #[prost(uint32, tag = "3")]
    pub roles: u32,
    /// Argon2id hash of the password (PHC string); empty until enrolment.
    #[prost(string, tag = "4")]
    pub password_hash: String,
    /// TOTP secret (RFC 6238, 160 bits); empty until enrolment.
    #[prost(bytes = "vec", tag = "5")]
    pub totp_secret: Vec<u8>,
    /// Unix seconds of the `user add` that created the account.
    #[prost(uint64, tag = "6")]
    pub created_at: u64,
    /// Unix seconds of enrolment; 0 until then (no login is possible).
    #[prost(uint64, tag = "7")]
    pub enrolled_at: u64,
    /// Failed logins in a row since the last success or lock.
    #[prost(uint32, tag = "8")]
    pub failures: u32,
    /// Unix seconds until which the account is locked; 0 or past when it is not.
    #[prost(uint64, tag = "9")]
    pub locked_until: u64,
    /// Locks in a row since the last successful login: each lasts twice the one before.
    #[prost(uint32, tag = "10")]
    pub locks: u32,
    /// The TOTP time step of the last accepted code: a code is accepted once.
    #[prost(uint64, tag = "11")]
    pub last_totp_step: u64,
    /// A disabled account cannot log in.
    #[prost(bool, tag = "12")]
    pub disabled: bool,
    /// The UTC day (days since 1970-01-01) that `codes_today` counts.
    #[prost(uint64, tag = "13")]
    pub quota_day: u64,
    /// Codes issued by the account on `quota_day`, for the per-user daily quota.
    #[prost(uint32, tag = "14")]
    pub codes_today: u32,
}

impl ConsoleUser {
    /// Returns whether the account has every role bit in `role`.
    pub fn has_role(&self, role: u32) -> bool {
        self.roles & role == role
    }
}

/// A one-time enrolment link, stored under the SHA-256 of its token.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Enrolment {
    /// The account it enrols.
    #[prost(string, tag = "1")]
    pub email: String,
    /// Unix seconds after which the link no longer works.
    #[prost(uint64, tag = "2")]
    pub expires_at: u64,
    /// The TOTP secret offered on the enrolment page, kept so that a reload shows the same one
    /// (the person may have scanned it already); empty until the page is first shown.
    #[prost(bytes = "vec", tag = "3")]
    pub totp_secret: Vec<u8>,
}

/// A signed-in session, stored under the SHA-256 of its token.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Session {
    /// The account signed in.
    #[prost(string, tag = "1")]
    pub email: String,
    /// Unix seconds of the login: the session ends 12 h later whatever happens.
    #[prost(uint64, tag = "2")]
    pub created_at: u64,
    /// Unix seconds of the last request: the session ends 30 min after it.
    #[prost(uint64, tag = "3")]
    pub last_seen: u64,
    /// The token every POST of the session must carry (hex of 256 random bits).
    #[prost(string, tag = "4")]
    pub csrf_token: String,
}

/// One line of the append-only audit log (DESIGN.md section 13).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuditRecord {
    /// Unix seconds.
    #[prost(uint64, tag = "1")]
    pub at: u64,
    /// The account acting (or acted upon, for a failed login); empty when unknown.
    #[prost(string, tag = "2")]
    pub email: String,
    /// The authority the record belongs to; empty when unknown (a login to no account).
    #[prost(string, tag = "3")]
    pub authority_id: String,
    /// What happened: `login`, `login_failed`, `lock`, `enrol`, `code_issue`, `user_add`.
    #[prost(string, tag = "4")]
    pub action: String,
    /// What it concerned, e.g. `1 code, CONFIRMED_TEST` (never a code or a secret).
    #[prost(string, tag = "5")]
    pub object: String,
    /// `ok`, or why it failed.
    #[prost(string, tag = "6")]
    pub result: String,
    /// The client's network: an IPv4 address or an IPv6 /64; empty when unknown.
    #[prost(string, tag = "7")]
    pub network: String,
}

/// Returns the names of the roles in `roles`, comma-separated (`admin,issuer`).
pub fn role_names(roles: u32) -> String {
    [
        (ROLE_ADMIN, "admin"),
        (ROLE_ISSUER, "issuer"),
        (ROLE_VIEWER, "viewer"),
    ]
    .iter()
    .filter(|(bit, _)| roles & bit != 0)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(",")
}

/// Returns the next tiebreak of audit keys: records of one second keep the order they were
/// written in. It starts from the system clock's nanoseconds, so it also grows across restarts.
fn next_audit_sequence() -> u64 {
    static SEQUENCE: LazyLock<AtomicU64> = LazyLock::new(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        AtomicU64::new(u64::try_from(nanos).unwrap_or(u64::MAX / 2))
    });
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// Returns the stored key of an enrolment or session token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Returns a fresh token of 256 random bits, as 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Store {
    /// Returns the account of `email` (lower case), if any.
    pub fn console_user(&self, email: &str) -> Result<Option<ConsoleUser>, StorageError> {
        self.get_console(CF_CONSOLE_USERS, email.as_bytes())
    }

    /// Stores an account (new or changed).
    pub fn put_console_user(&self, user: &ConsoleUser) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.stage_console_user(&mut batch, user);
        self.write_synced(batch)
    }

    /// Returns every account, ordered by e-mail address.
    pub fn console_users(&self) -> Result<Vec<ConsoleUser>, StorageError> {
        let mut users = Vec::new();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_CONSOLE_USERS), IteratorMode::Start)
        {
            let (_, value) = entry?;
            users.push(decode_record(&value, CF_CONSOLE_USERS)?);
        }
        Ok(users)
    }

    /// Stores a new account, its enrolment link and the audit record of its creation in one
    /// write (`user add`).
    pub fn add_console_user(
        &self,
        user: &ConsoleUser,
        enrolment_hash: &[u8],
        enrolment: &Enrolment,
    ) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.stage_console_user(&mut batch, user);
        self.stage_audit(
            &mut batch,
            &AuditRecord {
                at: user.created_at,
                email: String::new(),
                authority_id: user.authority_id.clone(),
                action: "user_add".into(),
                object: format!("{} ({})", user.email, role_names(user.roles)),
                result: "ok".into(),
                network: "command line".into(),
            },
        );
        batch.put_cf(
            self.cf(CF_CONSOLE_ENROLMENTS),
            enrolment_hash,
            prost::Message::encode_to_vec(enrolment),
        );
        self.write_synced(batch)
    }

    /// Returns the enrolment of a link's token, if it exists (expired ones included).
    pub fn enrolment(&self, token: &str) -> Result<Option<Enrolment>, StorageError> {
        self.get_console(CF_CONSOLE_ENROLMENTS, &token_hash(token))
    }

    /// Stores an enrolment under its link's token (the TOTP secret offered is added to it).
    pub fn put_enrolment(&self, token: &str, enrolment: &Enrolment) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_CONSOLE_ENROLMENTS),
            token_hash(token),
            prost::Message::encode_to_vec(enrolment),
        );
        self.write_synced(batch)
    }

    /// Completes an enrolment: stores the enrolled account and deletes the link, in one write.
    pub fn complete_enrolment(&self, token: &str, user: &ConsoleUser) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.stage_console_user(&mut batch, user);
        batch.delete_cf(self.cf(CF_CONSOLE_ENROLMENTS), token_hash(token));
        self.write_synced(batch)
    }

    /// Returns the session of a cookie's token, if it exists (expired ones included).
    pub fn session(&self, token: &str) -> Result<Option<Session>, StorageError> {
        self.get_console(CF_CONSOLE_SESSIONS, &token_hash(token))
    }

    /// Stores a session (new, or with its last request moved).
    pub fn put_session(&self, token: &str, session: &Session) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_CONSOLE_SESSIONS),
            token_hash(token),
            prost::Message::encode_to_vec(session),
        );
        self.write_synced(batch)
    }

    /// Deletes a session (logout, or found expired).
    pub fn delete_session(&self, token: &str) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_CONSOLE_SESSIONS), token_hash(token));
        self.write_synced(batch)
    }

    /// Deletes every session (a restored store: sessions ended after the backup must not come
    /// back); returns how many.
    pub fn end_all_sessions(&self) -> Result<usize, StorageError> {
        let mut batch = WriteBatch::default();
        let mut ended = 0;
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_CONSOLE_SESSIONS), IteratorMode::Start)
        {
            let (key, _) = entry?;
            batch.delete_cf(self.cf(CF_CONSOLE_SESSIONS), key);
            ended += 1;
        }
        self.write_synced(batch)?;
        Ok(ended)
    }

    /// Returns the UTC day and the number of codes the console accounts of `authority_id`
    /// issued on it, as last counted (`(0, 0)` before the first).
    pub fn authority_codes_today(&self, authority_id: &str) -> Result<(u64, u64), StorageError> {
        let Some(value) = self
            .db()
            .get_pinned_cf(self.cf(CF_META), authority_codes_key(authority_id))?
        else {
            return Ok((0, 0));
        };
        if value.len() != 16 {
            return Err(StorageError::Corrupt {
                column_family: CF_META,
                reason: format!("a code count of {} bytes, not 16", value.len()),
            });
        }
        Ok((
            super::decode_u64(&value[..8], CF_META)?,
            super::decode_u64(&value[8..], CF_META)?,
        ))
    }

    /// Sets the count of codes the console accounts of `authority_id` issued on `day`.
    pub fn put_authority_codes_today(
        &self,
        authority_id: &str,
        day: u64,
        count: u64,
    ) -> Result<(), StorageError> {
        let mut value = Vec::with_capacity(16);
        value.extend_from_slice(&day.to_be_bytes());
        value.extend_from_slice(&count.to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), authority_codes_key(authority_id), value);
        self.write_synced(batch)
    }

    /// Appends a record to the audit log.
    pub fn append_audit(&self, record: &AuditRecord) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        self.stage_audit(&mut batch, record);
        self.write_synced(batch)
    }

    fn stage_audit(&self, batch: &mut WriteBatch, record: &AuditRecord) {
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&record.at.to_be_bytes());
        key.extend_from_slice(&next_audit_sequence().to_be_bytes());
        batch.put_cf(
            self.cf(CF_CONSOLE_AUDIT),
            key,
            prost::Message::encode_to_vec(record),
        );
    }

    /// Adds the deletion of every audit record written before `cutoff` (Unix seconds) to
    /// `batch`; returns how many (records are keyed by time, so only those are read).
    pub(crate) fn delete_audit_before(
        &self,
        batch: &mut WriteBatch,
        cutoff: u64,
    ) -> Result<usize, StorageError> {
        let mut deleted = 0;
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_CONSOLE_AUDIT), IteratorMode::Start)
        {
            let (key, _) = entry?;
            let at = match key.get(..8) {
                Some(at) => super::decode_u64(at, CF_CONSOLE_AUDIT)?,
                None => 0,
            };
            if at >= cutoff {
                break;
            }
            batch.delete_cf(self.cf(CF_CONSOLE_AUDIT), key);
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Returns the audit records of `authority_id`, oldest first.
    pub fn audit_records(&self, authority_id: &str) -> Result<Vec<AuditRecord>, StorageError> {
        let mut records = Vec::new();
        for entry in self
            .db()
            .iterator_cf(self.cf(CF_CONSOLE_AUDIT), IteratorMode::Start)
        {
            let (_, value) = entry?;
            let record: AuditRecord = decode_record(&value, CF_CONSOLE_AUDIT)?;
            if record.authority_id == authority_id {
                records.push(record);
            }
        }
        Ok(records)
    }

    fn stage_console_user(&self, batch: &mut WriteBatch, user: &ConsoleUser) {
        batch.put_cf(
            self.cf(CF_CONSOLE_USERS),
            user.email.as_bytes(),
            prost::Message::encode_to_vec(user),
        );
    }

    fn get_console<M: prost::Message + Default>(
        &self,
        column_family: &'static str,
        key: &[u8],
    ) -> Result<Option<M>, StorageError> {
        match self.db().get_pinned_cf(self.cf(column_family), key)? {
            Some(value) => Ok(Some(decode_record(&value, column_family)?)),
            None => Ok(None),
        }
    }
}
