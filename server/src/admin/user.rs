//! `exposure-server user add`: creates a staff account of the console (DESIGN.md section 13)
//! for an authority, with its roles, and prints a one-time enrolment link valid 24 hours, where
//! the person sets a password and a TOTP second factor. Works on a stopped data directory and
//! on a running server's (through the inbox), as `authority add` does. Only the SHA-256 of the
//! link's token is stored.

use std::io::Write;

use clap::{Subcommand, ValueEnum};

use super::{AdminError, DataDir, Opened, failed, open, report_applied};
use crate::clock::Clock;
use crate::inbox::{self, InboxRequest};
use crate::storage::Store;
use crate::storage::console::{
    ConsoleUser, Enrolment, ROLE_ADMIN, ROLE_ISSUER, ROLE_VIEWER, new_token, role_names, token_hash,
};

/// How long an enrolment link works.
pub const ENROLMENT_VALID_FOR: u64 = 24 * 3600;

/// A role of a console account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Manages the authority's users and reads its audit log.
    Admin,
    /// Issues upload codes.
    Issuer,
    /// Reads the statistics.
    Viewer,
}

impl Role {
    /// Returns the stored role bit.
    pub fn bit(self) -> u32 {
        match self {
            Role::Admin => ROLE_ADMIN,
            Role::Issuer => ROLE_ISSUER,
            Role::Viewer => ROLE_VIEWER,
        }
    }
}

/// `exposure-server user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a staff account of the console and prints its one-time enrolment link (valid
    /// 24 h), alone on the last line.
    Add {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// Id of the authority the account belongs to, as `authority list` shows it.
        #[arg(long)]
        authority: String,
        /// E-mail address: the login name.
        #[arg(long)]
        email: String,
        /// Roles (repeat, or comma-separate, to combine): admin, issuer, viewer.
        #[arg(long = "role", required = true, value_enum, value_delimiter = ',')]
        roles: Vec<Role>,
        /// The console's address as staff reach it, the start of the printed link.
        #[arg(
            long,
            env = "EXPOSURE_CONSOLE_URL",
            default_value = "http://127.0.0.1:8081"
        )]
        console_url: String,
    },
}

/// Runs a `user` command, writing its report to `out`.
pub fn user(command: UserCommand, out: &mut impl Write) -> Result<(), AdminError> {
    let UserCommand::Add {
        data,
        authority,
        email,
        roles,
        console_url,
    } = command;
    let email = normalized_email(&email)?;
    let now = Clock::System.now();
    let user = ConsoleUser {
        email: email.clone(),
        authority_id: authority.clone(),
        roles: roles.iter().fold(0, |bits, role| bits | role.bit()),
        created_at: now,
        ..ConsoleUser::default()
    };
    let token = new_token();
    let enrolment = Enrolment {
        email: email.clone(),
        expires_at: now + ENROLMENT_VALID_FOR,
        totp_secret: Vec::new(),
    };
    match open(&data.data_dir)? {
        Opened::Store(store) => {
            check_new_user(&store, &authority, &email)?;
            store
                .add_console_user(&user, &token_hash(&token), &enrolment)
                .map_err(failed)?;
        }
        Opened::HeldByServer => {
            let store = Store::open_read_only(&data.data_dir).map_err(failed)?;
            check_new_user(&store, &authority, &email)?;
            let request = InboxRequest {
                add_user: Some(user.clone()),
                enrolment_hash: token_hash(&token).to_vec(),
                enrolment: Some(enrolment),
                requested_at: now,
                ..InboxRequest::default()
            };
            let path = inbox::submit(&data.data_dir, &request).map_err(failed)?;
            report_applied(out, &path)?;
        }
    }
    writeln!(
        out,
        "created console user {email} ({}) of authority {authority}",
        role_names(user.roles)
    )
    .map_err(failed)?;
    writeln!(
        out,
        "enrolment link (valid 24 h, works once; send it to the person only):"
    )
    .map_err(failed)?;
    writeln!(
        out,
        "{}/enrol?token={token}",
        console_url.trim_end_matches('/')
    )
    .map_err(failed)
}

/// Refuses an account for an authority that is not active, or an address already taken.
fn check_new_user(store: &Store, authority: &str, email: &str) -> Result<(), AdminError> {
    if store.active_authority(authority).map_err(failed)?.is_none() {
        return Err(AdminError::Usage(format!(
            "--authority: no active authority with id {authority:?} (see `authority list`)"
        )));
    }
    if store.console_user(email).map_err(failed)?.is_some() {
        return Err(AdminError::Usage(format!(
            "--email: {email} already has an account"
        )));
    }
    Ok(())
}

/// Returns the address in lower case, or a usage error naming `--email`.
pub(crate) fn normalized_email(email: &str) -> Result<String, AdminError> {
    let email = email.trim().to_lowercase();
    let well_formed = email.len() <= 254
        && !email.chars().any(|character| character.is_whitespace())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if well_formed {
        Ok(email)
    } else {
        Err(AdminError::Usage(format!(
            "--email: {email:?} is not an e-mail address (name@example.org)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_lower_cased_and_checked() {
        assert_eq!(
            normalized_email(" Nurse@Example.ORG ").ok().as_deref(),
            Some("nurse@example.org")
        );
        for bad in [
            "",
            "nurse",
            "@example.org",
            "nurse@example",
            "a b@example.org",
            "a@b@c.org",
        ] {
            assert!(normalized_email(bad).is_err(), "{bad:?}");
        }
    }
}
