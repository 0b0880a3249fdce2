//! The users page of an authority's admins (DESIGN.md section 13): the authority's accounts,
//! an invitation (the same one-time enrolment link as `exposure-server user add`), role
//! changes, disabling and enabling, and the reset of a second factor (the person enrols again
//! through a new link). An authority always keeps one enabled admin: a change that would leave
//! none is refused with a message. An admin sees and changes the accounts of their own
//! authority only; another's are answered as unknown. Every change, done or refused, is an
//! audit record.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;

use super::login::internal;
use super::session::{Form, Request, SignedIn, signed_in};
use super::{ConsoleState, blocking, network_text, pages};
use crate::admin::user::{ENROLMENT_VALID_FOR, normalized_email};
use crate::storage::StorageError;
use crate::storage::console::{
    AuditRecord, ConsoleUser, Enrolment, ROLE_ADMIN, ROLE_ISSUER, ROLE_VIEWER, new_token,
    role_names,
};

/// What a change did.
enum Outcome {
    /// Done; an enrolment link to hand over when there is one.
    Done(Option<String>),
    /// Refused: the catalogue's reason.
    Refused(&'static str),
}

/// Returns the signed-in admin, or the answer for anyone else.
async fn admin_of(state: &Arc<ConsoleState>, request: &Request) -> Result<SignedIn, Response> {
    let t = request.lang.text();
    match signed_in(state, request).await {
        Ok(Some(signed)) if signed.user.has_role(ROLE_ADMIN) => Ok(signed),
        Ok(Some(_)) => Err(pages::message(
            request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.cannot_see,
        )),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(error) => Err(internal(request, &error)),
    }
}

/// `GET /users`: the authority's accounts and the invitation form.
pub async fn users(State(state): State<Arc<ConsoleState>>, request: Request) -> Response {
    let signed = match admin_of(&state, &request).await {
        Ok(signed) => signed,
        Err(answer) => return answer,
    };
    page(&state, &request, &signed, StatusCode::OK, None, None).await
}

/// Answers the users page with a notice or an error and, after an invitation or a reset, the
/// enrolment link.
async fn page(
    state: &Arc<ConsoleState>,
    request: &Request,
    signed: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
    link: Option<&str>,
) -> Response {
    let store = state.store.clone();
    let authority = signed.user.authority_id.clone();
    let users = match blocking(move || authority_users(&store, &authority)).await {
        Ok(users) => users,
        Err(error) => return internal(request, &error),
    };
    let now = state.clock.now();
    let markup = pages::users(request, signed, &users, now, error, link);
    pages::respond(request, status, markup)
}

/// Returns the accounts of `authority_id`, by address.
fn authority_users(
    store: &crate::storage::Store,
    authority_id: &str,
) -> Result<Vec<ConsoleUser>, StorageError> {
    let mut users: Vec<ConsoleUser> = store
        .console_users()?
        .into_iter()
        .filter(|user| user.authority_id == authority_id)
        .collect();
    users.sort_by(|a, b| a.email.cmp(&b.email));
    Ok(users)
}

/// Returns the role bits a form's `role_admin`, `role_issuer`, `role_viewer` boxes ask for.
fn form_roles(form: &Form) -> u32 {
    [
        ("role_admin", ROLE_ADMIN),
        ("role_issuer", ROLE_ISSUER),
        ("role_viewer", ROLE_VIEWER),
    ]
    .iter()
    .filter(|(name, _)| !form.get(name).is_empty())
    .fold(0, |roles, (_, bit)| roles | bit)
}

/// `POST /users`: one change, named by the form's `action`: `invite`, `roles`, `disable`,
/// `enable` or `reset`.
pub async fn change(
    State(state): State<Arc<ConsoleState>>,
    request: Request,
    body: Bytes,
) -> Response {
    let t = request.lang.text();
    let signed = match admin_of(&state, &request).await {
        Ok(signed) => signed,
        Err(answer) => return answer,
    };
    let form = Form::parse(&body);
    if !signed.csrf_ok(&form) {
        return pages::message(
            &request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.form_refused,
        );
    }
    let action = form.get("action").to_owned();
    let email = form.get("email").trim().to_lowercase();
    let roles = form_roles(&form);
    let now = state.clock.now();
    let worker = state.clone();
    let admin = signed.user.clone();
    let (target, act) = (email.clone(), action.clone());
    let outcome = blocking(move || apply(&worker, &admin, &act, &target, roles, now)).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return internal(&request, &error),
    };
    let (audit_action, object) = match action.as_str() {
        "invite" => ("user_invite", format!("{email} ({})", role_names(roles))),
        "roles" => ("role_change", format!("{email} ({})", role_names(roles))),
        "disable" => ("user_disable", email.clone()),
        "enable" => ("user_enable", email.clone()),
        "reset" => ("second_factor_reset", email.clone()),
        _ => ("user_change", email.clone()),
    };
    let record = AuditRecord {
        at: now,
        email: signed.user.email.clone(),
        authority_id: signed.user.authority_id.clone(),
        action: audit_action.into(),
        object,
        result: match &outcome {
            Outcome::Done(_) => "ok".into(),
            Outcome::Refused(reason) => (*reason).into(),
        },
        network: network_text(request.peer.as_ref()),
    };
    let audited = state.clone();
    if let Err(error) = blocking(move || {
        audited.audit(record);
        Ok(())
    })
    .await
    {
        return internal(&request, &error);
    }
    match outcome {
        Outcome::Done(token) => {
            let link = token.map(|token| enrolment_link(&state, &request, &token));
            page(
                &state,
                &request,
                &signed,
                StatusCode::OK,
                None,
                link.as_deref(),
            )
            .await
        }
        Outcome::Refused(reason) => {
            let text = match reason {
                "last admin" => t.last_admin,
                "address taken" => t.address_taken,
                "bad address" => t.bad_address,
                "no roles" => t.no_roles,
                _ => t.no_such_user,
            };
            let status = if reason == "last admin" || reason == "address taken" {
                StatusCode::CONFLICT
            } else if reason == "no such user" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            page(&state, &request, &signed, status, Some(text), None).await
        }
    }
}

/// Returns the enrolment link of `token` on the console as the browser reaches it.
fn enrolment_link(state: &ConsoleState, request: &Request, token: &str) -> String {
    let host = request
        .headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("127.0.0.1:8081");
    let scheme = if state.https { "https" } else { "http" };
    format!("{scheme}://{host}/enrol?token={token}")
}

/// Applies one change of `admin` to the account `email`, under the accounts' lock so that two
/// admins cannot both remove the last other admin.
fn apply(
    state: &ConsoleState,
    admin: &ConsoleUser,
    action: &str,
    email: &str,
    roles: u32,
    now: u64,
) -> Result<Outcome, StorageError> {
    let _accounts = state
        .accounts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let store = &state.store;
    if action == "invite" {
        let Ok(email) = normalized_email(email) else {
            return Ok(Outcome::Refused("bad address"));
        };
        if roles == 0 {
            return Ok(Outcome::Refused("no roles"));
        }
        if store.console_user(&email)?.is_some() {
            return Ok(Outcome::Refused("address taken"));
        }
        let user = ConsoleUser {
            email: email.clone(),
            authority_id: admin.authority_id.clone(),
            roles,
            created_at: now,
            ..ConsoleUser::default()
        };
        let token = new_token();
        store.put_console_user(&user)?;
        store.put_enrolment(
            &token,
            &Enrolment {
                email,
                expires_at: now + ENROLMENT_VALID_FOR,
                totp_secret: Vec::new(),
            },
        )?;
        return Ok(Outcome::Done(Some(token)));
    }
    // Another authority's account is answered like a missing one.
    let Some(mut user) = store
        .console_user(email)?
        .filter(|user| user.authority_id == admin.authority_id)
    else {
        return Ok(Outcome::Refused("no such user"));
    };
    let mut token = None;
    match action {
        "roles" if roles == 0 => return Ok(Outcome::Refused("no roles")),
        "roles" => user.roles = roles,
        "disable" => user.disabled = true,
        "enable" => user.disabled = false,
        "reset" => {
            // The person enrols again: a new password and second factor through a new link;
            // the account's sessions end (a session needs an enrolled account).
            user.enrolled_at = 0;
            user.totp_secret = Vec::new();
            user.last_totp_step = 0;
            token = Some(new_token());
        }
        _ => return Ok(Outcome::Refused("no such user")),
    }
    let enabled_admins = authority_users(store, &admin.authority_id)?
        .iter()
        .map(|other| {
            if other.email == user.email {
                &user
            } else {
                other
            }
        })
        .filter(|other| other.has_role(ROLE_ADMIN) && !other.disabled)
        .count();
    if enabled_admins == 0 {
        return Ok(Outcome::Refused("last admin"));
    }
    if let Some(token) = &token {
        store.put_enrolment(
            token,
            &Enrolment {
                email: user.email.clone(),
                expires_at: now + ENROLMENT_VALID_FOR,
                totp_secret: Vec::new(),
            },
        )?;
    }
    store.put_console_user(&user)?;
    Ok(Outcome::Done(token))
}
