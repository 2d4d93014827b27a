//! DescribeUserScramCredentials (50) and AlterUserScramCredentials (51): SCRAM users
//! kept in the metadata quorum, as `kafka-configs --entity-type users` and the admin
//! clients manage them. The client sends the salted password; the quorum stores only
//! the derived StoredKey and ServerKey.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::{str_bytes, Broker};
use crate::error::{apply_error_code, code, metadata_error_code};
use crate::metadata::{ApplyReply, MetadataRecord};
use crate::scram::{Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

pub fn handle_describe_user_scram_credentials(
    broker: &Broker,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = broker.admin.image();
    let describe = |user: &str| {
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        match image.scram.get(user) {
            Some(creds) => result.with_credential_infos(
                creds
                    .iter()
                    .filter_map(|(mechanism, c)| {
                        Some(
                            CredentialInfo::default()
                                .with_mechanism(Mechanism::from_name(mechanism)?.code())
                                .with_iterations(c.iterations),
                        )
                    })
                    .collect(),
            ),
            None => result
                .with_error_code(code::RESOURCE_NOT_FOUND)
                .with_error_message(Some(str_bytes(&format!(
                    "attempt to describe a user credential that does not exist: {user}"
                )))),
        }
    };
    let results = match request.users {
        // Null or empty: every user with a credential.
        None => image.scram.keys().map(|u| describe(u)).collect(),
        Some(users) if users.is_empty() => image.scram.keys().map(|u| describe(u)).collect(),
        Some(users) => {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for u in &users {
                *seen.entry(u.name.to_string()).or_default() += 1;
            }
            seen.into_iter()
                .map(|(user, n)| {
                    if n > 1 {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(str_bytes(&user))
                            .with_error_code(code::DUPLICATE_RESOURCE)
                            .with_error_message(Some(str_bytes(&format!(
                                "cannot describe the same user more than once: {user}"
                            ))))
                    } else {
                        describe(&user)
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(code::NONE)
        .with_results(results)
}

/// The checks every alteration of one user's credential passes (Kafka's order): named
/// once in the request, a known mechanism, a non-empty name.
fn checked(
    user: &str,
    mechanism: i8,
    duplicated: &BTreeSet<String>,
) -> Result<Mechanism, (i16, String)> {
    if duplicated.contains(user) {
        return Err((
            code::DUPLICATE_RESOURCE,
            format!("a user credential cannot be altered twice in one request: {user}"),
        ));
    }
    let mechanism = Mechanism::from_code(mechanism).ok_or_else(|| {
        (
            code::UNSUPPORTED_SASL_MECHANISM,
            format!("unknown SCRAM mechanism {mechanism}"),
        )
    })?;
    if user.is_empty() {
        return Err((
            code::UNACCEPTABLE_CREDENTIAL,
            "the user name is empty".into(),
        ));
    }
    Ok(mechanism)
}

pub async fn handle_alter_user_scram_credentials(
    broker: &Broker,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // One result per user; a user named twice for one mechanism is refused whole.
    let mut pairs: BTreeMap<(String, i8), usize> = BTreeMap::new();
    for d in &request.deletions {
        *pairs.entry((d.name.to_string(), d.mechanism)).or_default() += 1;
    }
    for u in &request.upsertions {
        *pairs.entry((u.name.to_string(), u.mechanism)).or_default() += 1;
    }
    let duplicated: BTreeSet<String> = pairs
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((user, _), _)| user.clone())
        .collect();
    let mut outcome: BTreeMap<String, (i16, Option<String>)> = BTreeMap::new();
    let mut fail = |user: &str, code: i16, message: String| {
        outcome
            .entry(user.to_string())
            .or_insert((code, Some(message)));
    };
    let mut records = Vec::new();
    for d in &request.deletions {
        let user = d.name.to_string();
        let mechanism = match checked(&user, d.mechanism, &duplicated) {
            Ok(m) => m,
            Err((code, message)) => {
                fail(&user, code, message);
                continue;
            }
        };
        records.push((
            user.clone(),
            MetadataRecord::DeleteScramCredential {
                user,
                mechanism: mechanism.name().to_string(),
            },
        ));
    }
    for u in &request.upsertions {
        let user = u.name.to_string();
        let mechanism = match checked(&user, u.mechanism, &duplicated) {
            Ok(m) => m,
            Err((code, message)) => {
                fail(&user, code, message);
                continue;
            }
        };
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) {
            fail(
                &user,
                code::UNACCEPTABLE_CREDENTIAL,
                format!(
                    "iterations {} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                    u.iterations
                ),
            );
            continue;
        }
        if u.salt.is_empty() || u.salted_password.is_empty() {
            fail(
                &user,
                code::UNACCEPTABLE_CREDENTIAL,
                "salt and salted password must not be empty".into(),
            );
            continue;
        }
        let credential = mechanism.credential(&u.salted_password, &u.salt, u.iterations);
        records.push((
            user.clone(),
            MetadataRecord::SetScramCredential {
                user,
                mechanism: mechanism.name().to_string(),
                credential,
            },
        ));
    }
    for (user, record) in records {
        // A user refused for one of its alterations gets none of them.
        if outcome
            .get(&user)
            .is_some_and(|(code, _)| *code != code::NONE)
        {
            continue;
        }
        let (code, message) = match broker.admin.quorum.propose(record).await {
            Ok(ApplyReply::Refused(e)) => (apply_error_code(&e), Some(e.to_string())),
            Ok(_) => (code::NONE, None),
            Err(e) => (metadata_error_code(&e), Some(e.to_string())),
        };
        if code != code::NONE {
            outcome.insert(user, (code, message));
        } else {
            outcome.entry(user).or_insert((code::NONE, None));
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(
        outcome
            .into_iter()
            .map(|(user, (code, message))| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(&user))
                    .with_error_code(code)
                    .with_error_message(message.map(|m| str_bytes(&m)))
            })
            .collect(),
    )
}
